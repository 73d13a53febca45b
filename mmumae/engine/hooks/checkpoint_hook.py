"""A checkpoint hook whose files survive a crash in the middle of a save."""
import os
import os.path as osp
import time

from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook

from mmumae.registry import HOOKS

# Seconds to pause between writing a checkpoint and moving it into place:
# only for tests that kill a run in the middle of a save.
SAVE_DELAY_ENV = 'MMUMAE_CKPT_SAVE_DELAY'


def _replace_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temporary file + rename)."""
    tmp = f'{path}.tmp'
    with open(tmp, 'w') as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` with crash-safe saving.

    mmengine's hook deletes the oldest kept checkpoint *before* writing the
    new one and writes the new one in place, so a run killed while saving
    (pre-emption, out of memory) can leave no complete checkpoint, with
    ``last_checkpoint`` naming a missing or truncated file. Here, on a local
    file system:

    1. the checkpoint is written to ``.<name>.tmp`` in the same folder;
    2. it is renamed to ``<name>`` (atomic: the old or the new file, never
       half of one);
    3. ``last_checkpoint`` is rewritten (also atomically) to name it;
    4. only then are checkpoints beyond ``max_keep_ckpts`` deleted.

    A kill at any point leaves ``last_checkpoint`` naming a complete file.
    Remote back-ends (``backend_args``) are saved as mmengine does.
    Arguments are those of ``CheckpointHook``.
    """

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        if not isinstance(self.file_backend, LocalBackend):
            return super()._save_checkpoint_with_step(runner, step, meta)
        stale = []
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and
                                            self.keep_ckpt_ids[-1] == step):
            while len(self.keep_ckpt_ids) >= self.max_keep_ckpts:
                stale.append(self.keep_ckpt_ids.popleft())
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids',
                                           list(self.keep_ckpt_ids))
        name = self.filename_tmpl.format(step)
        self.last_ckpt = osp.join(self.out_dir, name)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        tmp_name = f'.{name}.tmp'
        runner.save_checkpoint(
            self.out_dir,
            tmp_name,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args)
        if not is_main_process():
            return
        delay = float(os.environ.get(SAVE_DELAY_ENV, 0) or 0)
        if delay > 0:
            time.sleep(delay)
        os.replace(osp.join(self.out_dir, tmp_name), self.last_ckpt)
        _replace_text(osp.join(runner.work_dir, 'last_checkpoint'),
                      self.last_ckpt)
        for old in stale:
            path = osp.join(self.out_dir, self.filename_tmpl.format(old))
            if osp.isfile(path):
                os.remove(path)
