"""Frozen-feature evaluations of a backbone's pooled last-stage features:
a weighted kNN (cosine similarity, the 20 nearest vote with weight
``exp(sim / 0.07)``, as Wu et al. 2018 and DINO) and a linear probe
(standardised features, multinomial logistic regression by L-BFGS, the L2
weight chosen on the validation split); scored by mmpretrain's metrics."""
from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from mmpretrain.evaluation import Accuracy, SingleLabelMetric

from mmumae.engine.hooks import knn_predict  # the pre-training probe's

PROBE_WEIGHT_DECAYS = (1e-4, 1e-3, 1e-2, 1e-1)


@torch.no_grad()
def extract(model, loader) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(features (N, C), labels (N,))`` of ``model.extract_feat``."""
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
    """Accuracy, balanced accuracy (macro recall) and macro-F1 (percent) of
    predicted labels or class scores."""
    if pred.dim() == 2:
        pred = pred.argmax(dim=1)
    acc = Accuracy.calculate(pred, target)
    _, recall, f1, _ = SingleLabelMetric.calculate(
        pred, target, average='macro', num_classes=num_classes)
    return dict(acc=float(acc), bal_acc=float(recall), f1=float(f1))


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
    (xtr, ytr), (xva, yva), (xte, yte) = (feats[s]
                                          for s in ('train', 'val', 'test'))
    n = int(max(ytr.max(), yva.max(), yte.max())) + 1
    result = {f'knn_{split}_{k}': v for split, x, y in (
        ('val', xva, yva), ('test', xte, yte))
        for k, v in scores(knn_predict(xtr, ytr, x, n), y, n).items()}
    mean, std = xtr.mean(0), xtr.std(0).clamp_min(1e-6)
    ntr, nva, nte = ((x - mean) / std for x in (xtr, xva, xte))
    best = None
    for wd in PROBE_WEIGHT_DECAYS:
        with torch.enable_grad():
            linear = fit_linear(ntr, ytr, n, wd)
        with torch.no_grad():
            val, test = (scores(linear(x), y, n)
                         for x, y in ((nva, yva), (nte, yte)))
        if best is None or val['acc'] > best[1]['acc']:  # chosen on val
            best = (wd, val, test)
    result.update({f'linear_{split}_{k}': v for split, s in zip(
        ('val', 'test'), best[1:]) for k, v in s.items()})
    return dict(result, linear_weight_decay=best[0])
