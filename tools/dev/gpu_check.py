"""The prepared GPU check: one command, a table and a JSON file.

    bash tools/dev/gpu_check.sh [--cpu] [--out DIR] [--budget-s N]

``tools/dev/gpu_check.sh`` installs the wheels of
``tools/dev/make_gpu_wheels.sh`` and runs this script. Each step runs in its
own process group, time-boxed, and ends ok, failed or skipped (with the reason)
and its seconds; a failed step never stops the next ones, and the whole check
ends inside ``--budget-s``:

1. ``data``: Fashion-MNIST written once under the work dir;
2. ``tests``: the ``gpu``-marked unit tests (``pytest -m gpu``);
3. ``train``: single-process ``torchrun`` (NCCL) of the embedded
   HIRL-SimSiam past its warm-up with bf16 AMP, checkpoints every epoch;
4. ``resume``: ``--resume`` from the last checkpoint for one more epoch;
5. ``kmeans``: ``benchmarks/kmeans_speed.py`` on the device;
6. ``science``: ``tools/main_job.py`` SimSiam vs HIRL-SimSiam on all 60k
   images, one process per seed, as many epochs and seeds as fit.

``--cpu`` runs the same at toy sizes on the CPU (gloo, no AMP), so that
everything but CUDA is proven without a GPU. The table goes to stdout and
``gpu_check.md``, the results to ``gpu_check.json`` (rewritten after every
step) and each step's output to ``logs/<step>.log``, all in ``--out``
(default ``$OUT``, else ``work_dirs/gpu_check``); data, checkpoints and runs
go to ``--work-dir``, never to ``--out``.
"""
import argparse
import glob
import json
import math
import os
import os.path as osp
import re
import shutil
import signal
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = 'configs/hirl/hirl-simsiam_resnet18_1xb64-coslr-10e_fmnist.py'
FMNIST = '/usr/share/datasets/fashion-mnist'
# What each mode trains; caps are each step's longest time box (seconds),
# floors the least time a later step is left.
MODES = {
    'gpu':
    dict(
        device='cuda',
        subset=6400,
        batch=64,
        epochs=3,
        workers=8,
        science=None,  # planned from the train step's speed
        kmeans_args=[],  # its defaults: 1.28M x 128 and 256k x 2048
        max_seeds=3,
        caps=dict(data=90, tests=120, train=150, resume=75, kmeans=90),
        floors=dict(tests=30, train=60, resume=30, kmeans=30, science=120)),
    'cpu':
    dict(
        device='cpu',
        subset=120,
        batch=32,
        epochs=3,
        workers=2,
        science=dict(subset='200', seeds=[0], epochs=2, warmup=1),
        kmeans_args=['--n', '20000', '--k', '100'],
        max_seeds=1,
        caps=dict(data=200, tests=300, train=400, resume=250, kmeans=120),
        floors=dict(tests=30, train=60, resume=30, kmeans=20)),
}


class StepTimeout(Exception):
    """A step's process group outlived its time box."""


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='One-command check of hirl_mm on a single GPU: unit '
        'tests, NCCL torchrun with bf16 AMP and --resume, k-means speed and '
        'the science comparison, each time-boxed.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument(
        '--cpu',
        action='store_true',
        help='the same at toy sizes on the CPU (gloo, no AMP)')
    parser.add_argument(
        '--out',
        default=os.environ.get('OUT') or osp.join('work_dirs', 'gpu_check'),
        help='gpu_check.json, gpu_check.md and logs/ (default: $OUT when '
        'set)')
    parser.add_argument(
        '--work-dir',
        default='/tmp/hirl_mm_gpu_check',
        help='data, checkpoints and runs (large: never under --out)')
    parser.add_argument(
        '--budget-s',
        type=float,
        default=540,
        help='the whole check ends within this many seconds')
    parser.add_argument(
        '--data-root',
        default=os.environ.get('HIRL_MM_FMNIST') or FMNIST,
        help='folder with the four Fashion-MNIST idx files (default: '
        '$HIRL_MM_FMNIST, set by gpu_check.sh to .whl/fmnist)')
    parser.add_argument(
        '--steps',
        nargs='+',
        choices=['data', 'tests', 'train', 'resume', 'kmeans', 'science'],
        help='run only these steps (default: all)')
    args = parser.parse_args(argv)
    if args.budget_s <= 0:
        parser.error(f'--budget-s must be positive, got {args.budget_s}')
    out, work = osp.abspath(args.out), osp.abspath(args.work_dir)
    if work == out or work.startswith(out + os.sep):
        parser.error(f'--work-dir {args.work_dir} must not lie inside --out '
                     f'{args.out}: it holds data and checkpoints')
    return args


def kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM the process group of ``proc``, SIGKILL it 5 s later."""
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            if sig == signal.SIGTERM:  # the leader left: end the others
                os.killpg(proc.pid, signal.SIGKILL)
            return
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            return


def run(cmd: List[str],
        log_path: str,
        deadline: float,
        env: Optional[dict] = None) -> int:
    """Run ``cmd`` in a new process group from the repo root, output
    appended to ``log_path``.

    Args:
        cmd (list[str]): The command.
        log_path (str): Its stdout and stderr.
        deadline (float): ``time.monotonic()`` at which the whole group is
            killed.
        env (dict, optional): Its environment.

    Returns:
        int: The exit status.

    Raises:
        StepTimeout: after killing the whole group at ``deadline``.
    """
    timeout = deadline - time.monotonic()
    if timeout < 1:
        raise StepTimeout('no time left in the step')
    os.makedirs(osp.dirname(log_path), exist_ok=True)
    with open(log_path, 'a') as log:
        log.write('$ ' + ' '.join(cmd) + '\n')
        log.flush()
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            raise StepTimeout(f'timed out after {timeout:.0f} s')


def tail(path: str, lines: int = 15) -> str:
    if not osp.isfile(path):
        return ''
    with open(path, errors='replace') as f:
        return ''.join(f.readlines()[-lines:])


class Check:
    """Time-boxed steps with their results, a table and a JSON file.

    Args:
        budget_s (float): Seconds for all steps together.
        out (str): Folder of ``gpu_check.json``, ``gpu_check.md``, logs.
        meta (dict): Written into the JSON next to the steps.
        clock (callable): Seconds, monotonic. Defaults to time.monotonic.
    """

    def __init__(self,
                 budget_s: float,
                 out: str,
                 meta: Optional[dict] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.deadline = clock() + budget_s
        self.out = out
        self.meta = dict(meta or {})
        self.steps: List[dict] = []
        os.makedirs(osp.join(out, 'logs'), exist_ok=True)

    def remaining(self) -> float:
        return self.deadline - self.clock()

    def log_path(self, name: str) -> str:
        return osp.join(self.out, 'logs', f'{name}.log')

    def result(self, name: str) -> Optional[dict]:
        return next((s for s in self.steps if s['name'] == name), None)

    def ok(self, name: str) -> bool:
        step = self.result(name)
        return step is not None and step['status'] == 'ok'

    def step(self,
             name: str,
             fn: Callable[[float], dict],
             cap: float,
             reserve: float = 0.,
             needs: Optional[str] = None,
             skip: Optional[str] = None) -> dict:
        """Run ``fn(deadline)`` as step ``name``; never raises.

        ``fn`` takes the step's deadline (``time.monotonic()`` seconds),
        returns its details (a dict; ``'status': 'skipped'`` and a
        ``'reason'`` to skip itself) and raises to fail. The time box is
        ``cap``, shortened so that ``reserve`` seconds stay for the later
        steps.

        Args:
            name (str): The step's name.
            fn (callable): Takes the deadline.
            cap (float): The step's longest time box.
            reserve (float): Seconds the later steps need at least.
            needs (str, optional): A step that must have passed.
            skip (str, optional): Skip with this reason.

        Returns:
            dict: ``name``, ``status``, ``seconds``, ``reason``, ``detail``.
        """
        timeout = min(cap, self.remaining() - reserve)
        if skip is None and needs is not None and not self.ok(needs):
            skip = f'needs step {needs}'
        if skip is None and timeout < 1:
            skip = f'no time left ({self.remaining():.0f} s)'
        start = self.clock()
        status, reason, detail = 'skipped', skip, {}
        if skip is None:
            print(f'[gpu_check] {name}: up to {timeout:.0f} s', flush=True)
            try:
                detail = dict(fn(time.monotonic() + timeout) or {})
                status = detail.pop('status', 'ok')
                reason = detail.pop('reason', None)
            except Exception as exc:  # a failed step never stops the others
                status, reason = 'failed', f'{type(exc).__name__}: {exc}'
        entry = dict(
            name=name,
            status=status,
            seconds=round(self.clock() - start, 1),
            reason=reason,
            detail=detail)
        self.steps.append(entry)
        print(
            f'[gpu_check] {name}: {status} in {entry["seconds"]} s' +
            (f' ({reason})' if reason else ''),
            flush=True)
        if status == 'failed':
            print(tail(self.log_path(name)), flush=True)
        self.write()
        return entry

    def table(self) -> str:
        lines = ['| step | status | seconds | result |', '|---|---|---|---|']
        for s in self.steps:
            what = s['reason'] or ''
            summary = s['detail'].get('summary')
            if summary:
                what = f'{summary}; {what}' if what else summary
            lines.append(f'| {s["name"]} | {s["status"]} | {s["seconds"]} | '
                         f'{what.replace("|", "/")} |')
        return '\n'.join(lines)

    def write(self) -> None:
        with open(osp.join(self.out, 'gpu_check.json'), 'w') as f:
            json.dump(dict(self.meta, steps=self.steps), f, indent=2)
        with open(osp.join(self.out, 'gpu_check.md'), 'w') as f:
            f.write(self.table() + '\n')


# --------------------------------------------------------------- the steps
def step_env(args: argparse.Namespace) -> Dict[str, str]:
    """The steps' environment: unbuffered output, the data cache in the
    work dir, the checkout first on the path; no GPU and one thread per
    process in ``--cpu``."""
    env = dict(os.environ)
    env['PYTHONUNBUFFERED'] = '1'
    env['HIRL_MM_DATA'] = osp.join(args.work_dir, 'data')
    env['PYTHONPATH'] = os.pathsep.join(
        [ROOT] + [p for p in env.get('PYTHONPATH', '').split(os.pathsep) if p])
    env['MPLBACKEND'] = 'Agg'
    if args.cpu:
        env['CUDA_VISIBLE_DEVICES'] = ''
        env['HIRL_MM_GPU_TESTS_ON_CPU'] = '1'
        # on a few shared cores, threads that wait for each other in every
        # small op cost more than they give (k-means: 20x here)
        env.setdefault('OMP_NUM_THREADS', '1')
    return env


def data_step(args, check):
    code = ('import sys; from hirl_mm.datasets import '
            'HierarchicalFashionMNIST as D\n'
            'for s in ("train", "test"):\n'
            '    print(s, len(D(split=s, source_root=sys.argv[1])))')

    def fn(deadline):
        rc = run([sys.executable, '-c', code, args.data_root],
                 check.log_path('data'), deadline, step_env(args))
        if rc:
            raise RuntimeError(f'exit status {rc}')
        sizes = dict(
            re.findall(r'^(train|test) (\d+)$', tail(check.log_path('data')),
                       re.M))
        return dict(
            summary=f'train {sizes.get("train")} / test {sizes.get("test")} '
            'images',
            sizes=sizes)

    return fn


def tests_step(args, check):

    def fn(deadline):
        files = sorted(
            f for f in glob.glob(osp.join(ROOT, 'tests', 'test_*.py'))
            if 'mark.gpu' in open(f).read())
        if not files:
            return dict(status='skipped', reason='no gpu-marked tests')
        xml = osp.join(check.out, 'logs', 'pytest_gpu.xml')
        rc = run([
            sys.executable, '-m', 'pytest', '-m', 'gpu', '-q', '-rfEs', '-p',
            'no:cacheprovider', '--continue-on-collection-errors',
            f'--junitxml={xml}'
        ] + [osp.relpath(f, ROOT) for f in files], check.log_path('tests'),
                 deadline, step_env(args))
        counts = junit_counts(xml)
        counts['files'] = [osp.basename(f) for f in files]
        counts['summary'] = (f'{counts.get("passed", 0)} passed, '
                             f'{counts.get("failed", 0)} failed, '
                             f'{counts.get("errors", 0)} errors, '
                             f'{counts.get("skipped", 0)} skipped')
        if rc or counts.get('passed', 0) == 0:
            raise RuntimeError(f'pytest exit status {rc}: {counts["summary"]}')
        return counts

    return fn


def junit_counts(xml: str) -> dict:
    """Test counts of a pytest ``--junitxml`` file (empty if missing)."""
    if not osp.isfile(xml):
        return {}
    import xml.etree.ElementTree as ET
    root = ET.parse(xml).getroot()
    suite = root if root.tag == 'testsuite' else root.find('testsuite')
    counts = {
        k: int(suite.get(k, 0))
        for k in ('tests', 'failures', 'errors', 'skipped')
    }
    counts['failed'] = counts.pop('failures')
    counts['passed'] = (
        counts['tests'] - counts['failed'] - counts['errors'] -
        counts['skipped'])
    return counts


def train_command(args: argparse.Namespace, mode: dict, epochs: int,
                  resume: bool) -> List[str]:
    """``torchrun --standalone --nproc_per_node 1 tools/train.py`` of the
    embedded HIRL-SimSiam at the mode's size, warm-up 1 epoch."""
    work = osp.join(args.work_dir, 'train')
    options = [
        f'train_dataloader.dataset.subset_size={mode["subset"]}',
        f'train_dataloader.batch_size={mode["batch"]}',
        f'train_dataloader.dataset.source_root={args.data_root}',
        f'train_dataloader.num_workers={mode["workers"]}',
        f'train_cfg.max_epochs={epochs}',
        f'custom_hooks.{prototype_hook_index()}.warmup_epochs=1',
        'default_hooks.logger.interval=10',
        'randomness.seed=0',
    ]
    cmd = [
        sys.executable, '-m', 'torch.distributed.run', '--standalone',
        '--nproc_per_node', '1', 'tools/train.py', CONFIG, '--launcher',
        'pytorch', '--work-dir', work
    ]
    if not args.cpu:
        cmd.append('--amp')
        options += [
            'optim_wrapper.dtype=bfloat16', 'env_cfg.dist_cfg.backend=nccl'
        ]
    if resume:
        cmd.append('--resume')
    return cmd + ['--cfg-options'] + options


def prototype_hook_index(config: str = CONFIG) -> int:
    """Position of ``HierarchicalPrototypeHook`` in the config's hooks."""
    from mmengine.config import Config
    hooks = Config.fromfile(osp.join(ROOT, config)).custom_hooks
    for i, hook in enumerate(hooks):
        if hook['type'] == 'HierarchicalPrototypeHook':
            return i
    raise ValueError(f'{config} has no HierarchicalPrototypeHook')


def read_scalars(work_dir: str) -> List[dict]:
    """Every record of the newest run's ``vis_data/scalars.json``."""
    files = sorted(
        glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')),
        key=osp.getmtime)
    if not files:
        return []
    with open(files[-1]) as f:
        return [json.loads(line) for line in f if line.strip()]


def training_summary(records: List[dict]) -> dict:
    """Epochs, ``loss_spd`` and seconds per iteration of a run's scalars."""
    train = [r for r in records if 'loss' in r]
    spd = [r['loss_spd'] for r in train if 'loss_spd' in r]
    times = [r['time'] for r in train if 'time' in r][1:]
    return dict(
        epochs=sorted({r['epoch']
                       for r in train if 'epoch' in r}),
        loss=round(train[-1]['loss'], 4) if train else None,
        loss_spd=round(spd[-1], 4) if spd else None,
        loss_spd_records=len(spd),
        loss_spd_finite=bool(spd) and all(math.isfinite(v) for v in spd),
        iter_seconds=round(sum(times) / len(times), 4) if times else None)


def train_step(args, check, mode):

    def fn(deadline):
        shutil.rmtree(osp.join(args.work_dir, 'train'), ignore_errors=True)
        rc = run(
            train_command(args, mode, mode['epochs'], resume=False),
            check.log_path('train'), deadline, step_env(args))
        work = osp.join(args.work_dir, 'train')
        detail = training_summary(read_scalars(work))
        ckpt = osp.join(work, f'epoch_{mode["epochs"]}.pth')
        detail['checkpoint'] = osp.isfile(ckpt)
        detail['amp'] = None if args.cpu else 'bf16'
        detail['backend'] = 'gloo' if args.cpu else 'nccl'
        detail['summary'] = (
            f'{detail["backend"]}, amp {detail["amp"]}, epochs '
            f'{detail["epochs"]}, loss_spd {detail["loss_spd"]} '
            f'(finite {detail["loss_spd_finite"]}), '
            f'{detail["iter_seconds"]} s/iter')
        if rc:
            raise RuntimeError(f'exit status {rc}')
        if not detail['checkpoint']:
            raise RuntimeError(f'no checkpoint {ckpt}')
        if not detail['loss_spd_finite']:
            raise RuntimeError(f'loss_spd missing or not finite: {detail}')
        return detail

    return fn


def resume_step(args, check, mode):

    def fn(deadline):
        epochs = mode['epochs'] + 1
        rc = run(
            train_command(args, mode, epochs, resume=True),
            check.log_path('resume'), deadline, step_env(args))
        work = osp.join(args.work_dir, 'train')
        detail = training_summary(read_scalars(work))
        found = re.findall(r'resumed epoch: (\d+)',
                           open(check.log_path('resume')).read())
        detail['resumed_epoch'] = int(found[-1]) if found else None
        detail['checkpoint'] = osp.isfile(
            osp.join(work, f'epoch_{epochs}.pth'))
        detail['summary'] = (f'resumed epoch {detail["resumed_epoch"]}, '
                             f'trained epochs {detail["epochs"]}, loss_spd '
                             f'{detail["loss_spd"]}')
        if rc:
            raise RuntimeError(f'exit status {rc}')
        if detail['resumed_epoch'] != mode['epochs'] or \
                detail['epochs'] != [epochs] or not detail['checkpoint']:
            raise RuntimeError(f'not resumed at epoch {mode["epochs"]}: '
                               f'{detail}')
        if not detail['loss_spd_finite']:
            raise RuntimeError(f'loss_spd missing or not finite: {detail}')
        return detail

    return fn


def help_text(script: str, env: dict) -> str:
    """``script --help``, or '' when it cannot run."""
    try:
        return subprocess.run([sys.executable, script, '--help'],
                              cwd=ROOT,
                              env=env,
                              capture_output=True,
                              text=True,
                              timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ''


def kmeans_step(args, check, mode):
    script = osp.join('benchmarks', 'kmeans_speed.py')

    def fn(deadline):
        if not osp.isfile(osp.join(ROOT, script)):
            return dict(status='skipped', reason=f'{script} is missing')
        env = step_env(args)
        usage = help_text(script, env)
        if '--device' not in usage:
            return dict(
                status='skipped', reason=f'{script} has no --device option')
        out = osp.join(args.work_dir, 'kmeans.json')
        cmd = [sys.executable, script, '--device', mode['device']]
        if '--out' in usage:
            cmd += ['--out', out]
        for flag, value in zip(mode['kmeans_args'][::2],
                               mode['kmeans_args'][1::2]):
            if flag in usage:
                cmd += [flag, value]
        rc = run(cmd, check.log_path('kmeans'), deadline, env)
        if rc:
            raise RuntimeError(f'exit status {rc}')
        detail = dict(command=' '.join(cmd[1:]))
        if osp.isfile(out):
            with open(out) as f:
                detail['results'] = json.load(f)
        rows = [
            line.strip()
            for line in tail(check.log_path('kmeans'), 40).splitlines()
            if line.startswith('|')
        ]
        detail['table'] = rows
        detail['summary'] = '; '.join(
            ' '.join(cell.strip() for cell in row.strip('|').split('|'))
            for row in rows[-2:]) or tail(check.log_path('kmeans'), 2).strip()
        return detail

    return fn


def science_plan(remaining: float, image_s: float, run_overhead_s: float,
                 max_seeds: int) -> Optional[dict]:
    """Images, seeds and epochs of SimSiam vs HIRL-SimSiam that fit.

    Two runs per seed (base and HIRL), each ``epochs * images * image_s +
    run_overhead_s``. All 60k images first, then 20k, then 10k; at each
    size three seeds when they allow 4 epochs or more, else one seed with
    3 or more; HIRL warms up for a third of the epochs (at least 1).

    Args:
        remaining (float): Seconds for all runs.
        image_s (float): Training seconds per image.
        run_overhead_s (float): Seconds per run besides training (start,
            evaluation, pictures).
        max_seeds (int): Seeds wanted.

    Returns:
        dict: ``subset`` ('all' or a count), ``seeds``, ``epochs``,
        ``warmup``, or None when nothing fits.
    """
    for images in (60000, 20000, 10000):
        for seeds in sorted({max_seeds, 1}, reverse=True):
            per_run = remaining / (2 * seeds) - run_overhead_s
            epochs = int(per_run // (images * image_s))
            if epochs >= (4 if seeds > 1 else 3):
                return dict(
                    subset='all' if images == 60000 else str(images),
                    seeds=list(range(seeds)),
                    epochs=epochs,
                    warmup=max(1, epochs // 3))
    return None


def science_step(args, check, mode):
    script = osp.join('tools', 'main_job.py')

    def fn(deadline):
        env = step_env(args)
        usage = help_text(script, env)
        if not usage:
            raise RuntimeError(f'{script} --help failed')
        # seconds per epoch on all 60k images from the train step's speed
        train = check.result('train') or {}
        iter_s = train.get('detail', {}).get('iter_seconds')
        image_s = 1.3 * iter_s / mode['batch'] if iter_s else 1e-3
        left = deadline - time.monotonic()
        plan = mode['science'] or science_plan(left - 5, image_s, 60.,
                                               mode['max_seeds'])
        if plan is None:
            return dict(
                status='skipped',
                reason=f'{left:.0f} s hold no 3 epochs of 2 runs on 10k '
                f'images (about {1e4 * image_s:.0f} s per epoch)')
        base = [
            sys.executable, script, '--methods', 'SimSiam', 'HIRL-SimSiam',
            '--subset', plan['subset'], '--epochs',
            str(plan['epochs']), '--warmup',
            str(plan['warmup'])
        ]
        if '--device' in usage:
            base += ['--device', mode['device']]
        if '--amp' in usage and not args.cpu:
            base += ['--amp', 'bf16']
        if '--data-root' in usage:
            base += ['--data-root', args.data_root]
        if '--cfg-options' in usage:
            base += [
                '--cfg-options',
                f'train_dataloader.num_workers={mode["workers"]}'
            ]
        shutil.rmtree(osp.join(args.work_dir, 'science'), ignore_errors=True)
        seeds, last = [], 0.
        for seed in plan['seeds']:
            if seeds and deadline - time.monotonic() < 1.1 * last:
                break  # the next seed would not fit: keep the done ones
            work = osp.join(args.work_dir, 'science', f'seed{seed}')
            begin = time.monotonic()
            rc = run(
                base[:2] + ['--work-dir', work, '--seeds',
                            str(seed)] + base[2:], check.log_path('science'),
                deadline, env)
            if rc:
                raise RuntimeError(f'seed {seed}: exit status {rc}')
            with open(osp.join(work, 'report.json')) as f:
                seeds.append(dict(seed=seed, report=json.load(f)))
            last = time.monotonic() - begin
        detail = dict(
            plan=plan,
            image_s_estimate=image_s,
            seconds_per_seed=round(last, 1))
        detail.update(science_summary(seeds))
        return detail

    return fn


SCIENCE_METRICS = ('knn_top1_fine', 'nmi_fine', 'nmi_coarse', 'ari_coarse')


def science_summary(seeds: List[dict]) -> dict:
    """Per method and metric, the values per seed and their mean, from each
    seed's ``report.json`` (its ``summary[method]['stats'][metric]`` mean,
    or its run rows)."""
    values: Dict[str, Dict[str, List[float]]] = {}
    for entry in seeds:
        for run_row in entry['report'].get('runs', []):
            method = values.setdefault(run_row['method'], {})
            for metric in SCIENCE_METRICS:
                if metric in run_row:
                    method.setdefault(metric, []).append(
                        round(float(run_row[metric]), 2))
    parts = []
    for method, metrics in values.items():
        cells = ', '.join(f'{m} {sum(v) / len(v):.2f}'
                          for m, v in metrics.items())
        parts.append(f'{method}: {cells}')
    base, hirl = values.get('SimSiam', {}), values.get('HIRL-SimSiam', {})
    paired = {
        m: [round(h - b, 2) for h, b in zip(hirl[m], base[m])]
        for m in SCIENCE_METRICS if m in base and m in hirl
    }
    if paired:
        parts.append('paired HIRL - SimSiam: ' +
                     ', '.join(f'{m} {sum(v) / len(v):+.2f}'
                               for m, v in paired.items()))
    return dict(
        seeds_done=[e['seed'] for e in seeds],
        per_seed=values,
        paired=paired,
        summary=f'seeds {[e["seed"] for e in seeds]}; ' + '; '.join(parts))


def environment(args) -> dict:
    """Versions and the device, from a subprocess (CUDA stays untouched
    here)."""
    code = ('import json, sys, numpy, torch\n'
            'v = dict(python=sys.version.split()[0], numpy=numpy.__version__,'
            ' torch=torch.__version__, cuda=torch.version.cuda,'
            ' gpu=torch.cuda.get_device_name(0) if torch.cuda.is_available()'
            ' else None)\n'
            'for m in ("mmengine", "mmcv", "mmpretrain", "faiss"):\n'
            '    try:\n'
            '        v[m] = __import__(m).__version__\n'
            '    except Exception as e:\n'
            '        v[m] = repr(e)\n'
            'print(json.dumps(v))')
    try:
        out = subprocess.run([sys.executable, '-c', code],
                             cwd=ROOT,
                             env=step_env(args),
                             capture_output=True,
                             text=True,
                             timeout=120)
        return json.loads(out.stdout.strip().splitlines()[-1])
    except Exception as exc:
        return dict(error=f'{type(exc).__name__}: {exc}')


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    args.work_dir = osp.abspath(args.work_dir)
    mode = MODES['cpu' if args.cpu else 'gpu']
    start = time.monotonic()
    check = Check(
        args.budget_s,
        args.out,
        meta=dict(mode='cpu' if args.cpu else 'gpu', budget_s=args.budget_s))
    check.meta['environment'] = environment(args)
    print(f'[gpu_check] {json.dumps(check.meta["environment"])}', flush=True)
    if not args.cpu and not check.meta['environment'].get('gpu'):
        print('[gpu_check] torch sees no GPU: use --cpu', flush=True)
    floors = mode['floors']
    order = ['data', 'tests', 'train', 'resume', 'kmeans', 'science']
    plan = dict(
        data=(data_step(args, check), None),
        tests=(tests_step(args, check), None),
        train=(train_step(args, check, mode), 'data'),
        resume=(resume_step(args, check, mode), 'train'),
        kmeans=(kmeans_step(args, check, mode), None),
        science=(science_step(args, check, mode), 'data'))
    for i, name in enumerate(order):
        fn, needs = plan[name]
        later = [s for s in order[i + 1:] if not args.steps or s in args.steps]
        skip = None
        if args.steps and name not in args.steps:
            skip = 'not in --steps'
            needs = None
        check.step(
            name,
            fn,
            cap=mode['caps'].get(name, args.budget_s),
            reserve=sum(floors.get(s, 0) for s in later),
            needs=needs,
            skip=skip)
    check.meta['seconds'] = round(time.monotonic() - start, 1)
    check.write()
    print('\n' + check.table(), flush=True)
    print(
        f'\n[gpu_check] {check.meta["seconds"]} s; results in '
        f'{osp.join(args.out, "gpu_check.json")}',
        flush=True)
    return int(any(s['status'] == 'failed' for s in check.steps))


if __name__ == '__main__':
    sys.exit(main())
