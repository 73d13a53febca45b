"""Frozen-feature evaluations of a backbone: a weighted kNN and a linear
probe on globally pooled features of the last stage.

- kNN: cosine similarity to every training feature, the ``k`` = 20 nearest
  vote with weight ``exp(similarity / 0.07)`` (the protocol of Wu et al.
  2018 and DINO).
- Linear probe: features standardised with the training split's mean and
  std, multinomial logistic regression fitted to convergence by L-BFGS; the
  L2 weight is chosen from a small grid on the validation split.

Scores go through mmpretrain's own metric functions (``Accuracy.calculate``,
``SingleLabelMetric.calculate``): accuracy, balanced accuracy (macro
recall) and macro-F1, in percent.
"""
from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from mmpretrain.evaluation import Accuracy, SingleLabelMetric

KNN_K = 20
KNN_T = 0.07
PROBE_WEIGHT_DECAYS = (1e-4, 1e-3, 1e-2, 1e-1)


@torch.no_grad()
def extract(model, loader) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(features (N, C), labels (N,))`` of a classifier's backbone and
    neck (``extract_feat``) in eval mode."""
    model.eval()
    feats, labels = [], []
    for batch in loader:
        data = model.data_preprocessor(batch, False)
        out = model.extract_feat(data['inputs'])
        feats.append(out[-1] if isinstance(out, (tuple, list)) else out)
        labels.append(torch.cat([s.gt_label for s in data['data_samples']]))
    return torch.cat(feats).float(), torch.cat(labels).long()


def scores(pred: torch.Tensor, target: torch.Tensor,
           num_classes: int) -> Dict[str, float]:
    """Accuracy, balanced accuracy and macro-F1 (percent) of predicted
    labels or class scores."""
    if pred.dim() == 2:
        pred = pred.argmax(dim=1)
    acc = Accuracy.calculate(pred, target)
    _, recall, f1, _ = SingleLabelMetric.calculate(
        pred, target, average='macro', num_classes=num_classes)
    return dict(acc=float(acc), bal_acc=float(recall), f1=float(f1))


def knn_predict(train: torch.Tensor, train_labels: torch.Tensor,
                query: torch.Tensor, num_classes: int, k: int = KNN_K,
                temperature: float = KNN_T) -> torch.Tensor:
    """Class scores (N, C) of a weighted kNN on cosine similarity."""
    train = F.normalize(train, dim=1)
    query = F.normalize(query, dim=1)
    sim = query @ train.t()
    k = min(k, train.shape[0])
    top, idx = sim.topk(k, dim=1)
    weights = (top / temperature).exp()
    votes = torch.zeros(query.shape[0], num_classes)
    votes.scatter_add_(1, train_labels[idx], weights)
    return votes


def fit_linear(x: torch.Tensor, y: torch.Tensor, num_classes: int,
               weight_decay: float, steps: int = 200) -> torch.nn.Linear:
    """Multinomial logistic regression fitted by L-BFGS."""
    linear = torch.nn.Linear(x.shape[1], num_classes)
    torch.nn.init.zeros_(linear.weight)
    torch.nn.init.zeros_(linear.bias)
    opt = torch.optim.LBFGS(linear.parameters(), lr=1.0, max_iter=steps,
                            history_size=20, line_search_fn='strong_wolfe')

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(linear(x), y) \
            + weight_decay * linear.weight.pow(2).sum() / 2
        loss.backward()
        return loss

    opt.step(closure)
    return linear


def evaluate_frozen(feats: Dict[str, Tuple[torch.Tensor, torch.Tensor]],
                    seed: int = 0) -> dict:
    """kNN and linear-probe scores on val and test, from the features of
    the train, val and test splits."""
    torch.manual_seed(seed)
    (xtr, ytr), (xva, yva), (xte, yte) = (feats['train'], feats['val'],
                                          feats['test'])
    num_classes = int(max(ytr.max(), yva.max(), yte.max())) + 1
    result = {}
    for split, (x, y) in (('val', (xva, yva)), ('test', (xte, yte))):
        s = scores(knn_predict(xtr, ytr, x, num_classes), y, num_classes)
        result.update({f'knn_{split}_{k}': v for k, v in s.items()})
    mean, std = xtr.mean(0), xtr.std(0).clamp_min(1e-6)
    ntr, nva, nte = ((x - mean) / std for x in (xtr, xva, xte))
    best = None
    for wd in PROBE_WEIGHT_DECAYS:
        with torch.enable_grad():
            linear = fit_linear(ntr, ytr, num_classes, wd)
        with torch.no_grad():
            val = scores(linear(nva), yva, num_classes)
        if best is None or val['acc'] > best[0]['acc']:
            best = (val, wd, linear)
    val, wd, linear = best
    with torch.no_grad():
        test = scores(linear(nte), yte, num_classes)
    for split, s in (('val', val), ('test', test)):
        result.update({f'linear_{split}_{k}': v for k, v in s.items()})
    return dict(result, linear_weight_decay=wd)
