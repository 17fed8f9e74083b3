"""Installation and command line: the GPU / CPU choices of
``tools/setup_env.sh`` (probes faked), its mmcv wheel cache key,
``pip install -e .`` into an existing environment, ``--auto-scale-lr`` on
every training config, the shell tools without an activated venv, a fast
``--help``."""
import errno
import glob
import json
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
import zipfile
from types import SimpleNamespace
from typing import List

import pytest
import torch
import yaml
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.optim import OptimWrapper
from mmengine.runner import Runner
from tools_path import ROOT, load_tool

cli = load_tool('tools/_cli.py')
train_tool = load_tool('tools/train.py')

SETUP_ENV = osp.join(ROOT, 'tools', 'setup_env.sh')
VENV = osp.dirname(osp.dirname(sys.executable))
PYTAG = 'cp%d%d' % sys.version_info[:2]
BARE_PATH = '/usr/bin:/bin'  # no venv on it


def clean_env():
    """The environment without the variables the scripts read."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith('HIRL_MM_') and k not in ('PYTHON', 'CUDA_HOME',
                                                      'VIRTUAL_ENV',
                                                      'TORCH_CUDA_ARCH_LIST')
    }


def plan(tmp_path, gpu, torch_build, nvcc=None, **env):
    """``setup_env.sh --print-plan`` with faked probes: (plan, log)."""
    out = subprocess.run(['bash', SETUP_ENV, '--print-plan'],
                         env=dict(
                             clean_env(),
                             HIRL_MM_VENV=VENV,
                             HIRL_MM_WHEEL_CACHE=str(tmp_path / 'wheels'),
                             HIRL_MM_GPU=gpu,
                             HIRL_MM_TORCH=torch_build,
                             HIRL_MM_NVCC=nvcc or 'none',
                             **env),
                         capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    return dict(line.split('=', 1)
                for line in out.stdout.splitlines()), out.stderr


@pytest.fixture
def nvcc(tmp_path):
    """A stand-in nvcc that prints the version line of CUDA 12.4's."""
    path = tmp_path / 'nvcc'
    path.write_text('#!/bin/sh\necho "Cuda compilation tools, '
                    'release 12.4, V12.4.131"\n')
    path.chmod(0o755)
    return str(path)


def test_plan_gpu_with_nvcc(tmp_path, nvcc):
    p, log = plan(
        tmp_path,
        '1',
        '2.5.1+cu124 12.4',
        nvcc,
        TORCH_CUDA_ARCH_LIST='8.0;9.0')
    assert (p['gpu'], p['mmcv_ops'], p['faiss']) == ('1', 'cuda',
                                                     'faiss-gpu-cu12')
    # CUDA ops run on the compute capabilities they were built for
    assert p['cuda_archs'] == '8.0;9.0'
    assert p['wheel_key'] == (
        f'mmcv2.1.0-torch2.5.1+cu124-cu124-sm80_90-{PYTAG}')
    assert p['wheel_source'] == 'build' and log == ''


def test_plan_gpu_without_nvcc(tmp_path):
    """pip's CUDA 13 torch, no nvcc: CPU ops and faiss-cpu, each said."""
    p, log = plan(tmp_path, '1', '2.14.1+cu130 13.0')
    assert (p['mmcv_ops'], p['faiss']) == ('cpu', 'faiss-cpu')
    assert p['wheel_key'] == f'mmcv2.1.0-torch2.14.1+cu130-cpu-{PYTAG}'
    assert 'no nvcc' in log and 'RoIAlign, NMS' in log
    assert 'no faiss-gpu wheel on PyPI for torch\'s CUDA 13.0' in log
    assert "k-means backend 'torch'" in log


def test_plan_gpu_with_nvcc_of_another_cuda(tmp_path, nvcc):
    p, log = plan(tmp_path, '1', '2.14.1+cu130 13.0', nvcc)
    assert p['mmcv_ops'] == 'cpu'
    assert "nvcc 12.4 (" in log and "does not match torch's CUDA 13.0" in log


def test_plan_cpu_host(tmp_path, nvcc):
    """No GPU: CPU ops even where an nvcc is installed, and no warning."""
    p, log = plan(tmp_path, '0', '2.14.1+cu130 13.0', nvcc)
    assert (p['gpu'], p['mmcv_ops'], p['faiss']) == ('0', 'cpu', 'faiss-cpu')
    assert log == ''


def test_plan_overrides(tmp_path, nvcc):
    p, _ = plan(
        tmp_path,
        '1',
        '2.14.1+cu130 13.0',
        HIRL_MM_FAISS='faiss-gpu-cu12',
        HIRL_MM_MMCV_OPS='cpu')
    assert (p['mmcv_ops'], p['faiss']) == ('cpu', 'faiss-gpu-cu12')
    bad = subprocess.run(['bash', SETUP_ENV, '--print-plan'],
                         env=dict(
                             clean_env(),
                             HIRL_MM_VENV=VENV,
                             HIRL_MM_GPU='0',
                             HIRL_MM_TORCH='2.14.1 none',
                             HIRL_MM_MMCV_OPS='gpu'),
                         capture_output=True,
                         text=True)
    assert bad.returncode != 0
    assert "HIRL_MM_MMCV_OPS must be cpu or cuda, got 'gpu'" in bad.stderr


def fake_wheel(path, ext_bytes):
    with zipfile.ZipFile(path, 'w') as whl:
        whl.writestr('mmcv/_ext.cpython-311-x86_64-linux-gnu.so', ext_bytes)


def test_wheel_cache_key_and_legacy_wheel(tmp_path):
    """The key separates torch, CPU / CUDA ops and Python; the unkeyed
    wheel of earlier set-ups serves the CPU key only when its ops link no
    CUDA library."""
    wheels = tmp_path / 'wheels'
    wheels.mkdir()
    legacy = wheels / f'mmcv-2.1.0-{PYTAG}-{PYTAG}-linux_x86_64.whl'
    fake_wheel(legacy, b'\0libc10.so\0libtorch_cpu.so\0')
    p, _ = plan(tmp_path, '0', '2.14.1+cu130 13.0')
    assert p['wheel'] == str(legacy) and p['wheel_source'].startswith(
        'legacy (copied into')
    fake_wheel(legacy, b'\0libc10.so\0libcudart.so.13\0')
    assert plan(tmp_path, '0', '2.14.1+cu130 13.0')[0]['wheel'] == 'none'
    # a keyed wheel is found under its own key, not under another torch's
    keyed = wheels / f'mmcv2.1.0-torch2.14.1+cu130-cpu-{PYTAG}'
    keyed.mkdir()
    fake_wheel(keyed / legacy.name, b'')
    p, _ = plan(tmp_path, '0', '2.14.1+cu130 13.0')
    assert (p['wheel'], p['wheel_source']) == (str(keyed / legacy.name),
                                               'cached')
    p, _ = plan(tmp_path, '0', '2.15.0+cu130 13.0')
    assert p['wheel_source'] == 'build'


def test_pip_install_into_existing_environment(tmp_path):
    """``pip install -e .`` offline into this venv would install hirl_mm
    alone: the ranges accept the torch, mmengine, mmcv and mmpretrain
    there, and none is a pin. A fresh environment:
    :func:`test_clean_install_trains`."""
    report = tmp_path / 'report.json'
    subprocess.run([
        sys.executable, '-m', 'pip', 'install', '--dry-run', '--no-index',
        '--no-build-isolation', '--quiet', '--report',
        str(report), '-e', '.'
    ],
                   cwd=ROOT,
                   check=True,
                   capture_output=True)
    installs = json.loads(report.read_text())['install']
    assert [i['metadata']['name'] for i in installs] == ['hirl_mm']
    requires = installs[0]['metadata']['requires_dist']
    assert not [r for r in requires if '==' in r.split(';')[0]], requires


def cached_mmcv_wheel() -> str:
    """The mmcv wheel ``tools/setup_env.sh`` built for this venv's torch
    and Python (its ``--print-plan``), or skip."""
    env = dict(clean_env(), HIRL_MM_VENV=VENV)
    if 'HIRL_MM_WHEEL_CACHE' in os.environ:
        env['HIRL_MM_WHEEL_CACHE'] = os.environ['HIRL_MM_WHEEL_CACHE']
    out = subprocess.run(['bash', SETUP_ENV, '--print-plan'],
                         env=env,
                         capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    p = dict(line.split('=', 1) for line in out.stdout.splitlines())
    if p['wheel_source'] != 'cached':
        pytest.skip(f"no mmcv wheel cached in {p['wheel_dir']} (built by "
                    'tools/setup_env.sh) for a clean install')
    return p['wheel']


def link_torch(site_packages: str) -> List[str]:
    """Put this venv's torch with all it depends on, and torchvision alone,
    into ``site_packages`` as pip installed them (every file of their
    RECORDs, hard-linked where possible): ``pip install torch torchvision``
    without downloading 4 GB of CUDA wheels again. Returns their
    ``name==version`` requirements."""
    from importlib.metadata import PackageNotFoundError, distribution

    from packaging.requirements import Requirement
    linked, seen, todo = set(), set(), [('torch', ()), ('torchvision', None)]
    while todo:
        name, extras = todo.pop()
        if name in ('setuptools', 'pip', 'wheel'):  # the registry's, fresh
            continue
        try:
            dist = distribution(name)
        except PackageNotFoundError:  # not installed here: pip fetches it
            continue
        if dist.metadata['Name'] not in linked:
            linked.add(dist.metadata['Name'])
            for file in dist.files:
                src = osp.normpath(dist.locate_file(file))
                dst = osp.normpath(osp.join(site_packages, file))
                if not dst.startswith(site_packages + os.sep):
                    continue  # console scripts: they name the other venv
                os.makedirs(osp.dirname(dst), exist_ok=True)
                try:
                    os.link(src, dst)
                except OSError as error:
                    if error.errno != errno.EXDEV:
                        raise
                    shutil.copy2(src, dst)  # another file system
        # torchvision's numpy and pillow: fresh from the registry
        if extras is None or (name, extras) in seen:
            continue
        seen.add((name, extras))
        for req in map(Requirement, dist.requires or []):
            if req.marker is None or any(
                    req.marker.evaluate({'extra': e}) for e in ('', *extras)):
                todo.append((req.name, tuple(sorted(req.extras))))
    return [
        f'{n}=={distribution(n).version}' for n in ('torch', 'torchvision')
    ]


def run_clean(venv, *args, timeout=600):
    """Run ``venv``'s python in the repository, its data sets cached in
    ``<venv>/data``; its output on failure."""
    out = subprocess.run([osp.join(venv, 'bin', 'python'), *args],
                         cwd=ROOT,
                         env=dict(
                             clean_env(),
                             PATH=BARE_PATH,
                             OMP_NUM_THREADS='1',
                             HIRL_MM_DATA=osp.join(venv, 'data')),
                         capture_output=True,
                         text=True,
                         timeout=timeout)
    assert out.returncode == 0, (args, out.stdout[-3000:], out.stderr[-5000:])
    return out.stdout


@pytest.mark.slow
def test_clean_install_trains(tmp_path, fake_fmnist):
    """A fresh Python venv with only torch, torchvision and the cached mmcv
    wheel, then ``pip install -e .`` from the registry: ``pip check`` is
    clean, the pins hold (setuptools with ``pkg_resources``, numpy 1,
    tensorboard), and ``tools/train.py`` trains a config with an
    ``mmpretrain::`` base whose checkpoint ``tools/test.py`` evaluates."""
    wheel = cached_mmcv_wheel()
    venv = str(tmp_path / 'venv')
    subprocess.run([sys._base_executable, '-m', 'venv', venv], check=True)
    site = run_clean(
        venv, '-c', 'import sysconfig; '
        'print(sysconfig.get_paths()["purelib"])').strip()
    pip = [
        '-m', 'pip', 'install', '--disable-pip-version-check', '-q',
        '--no-compile'
    ]
    # fills in torchvision's numpy and pillow and torch's setuptools>=77.0.3
    # (the newest, which has no pkg_resources)
    run_clean(venv, *pip, *link_torch(site))
    run_clean(venv, *pip, wheel)
    run_clean(venv, *pip, '-e', ROOT)
    run_clean(venv, '-m', 'pip', 'check')
    versions = json.loads(
        run_clean(
            venv, '-c', 'import json, pkg_resources, tensorboard; '
            'from importlib.metadata import version as v; '
            'print(json.dumps({n: v(n) for n in ("setuptools", "numpy", '
            '"opencv-python", "mmcv", "mmengine", "mmpretrain")}))'))
    assert int(versions['setuptools'].split('.')[0]) < 81, versions
    assert versions['numpy'].startswith('1.'), versions
    assert versions['mmcv'] == '2.1.0', versions

    data = [
        f'{split}.source_root={fake_fmnist}'
        for split in ('train_dataloader.dataset',
                      'test_dataloader.dataset.bank',
                      'test_dataloader.dataset.query')
    ]
    config = 'configs/simsiam/simsiam_resnet18_1xb64-coslr-10e_fmnist.py'
    run_clean(venv, 'tools/train.py', config, '--work-dir',
              str(tmp_path / 'train'), '--cfg-options', data[0],
              'train_dataloader.dataset.subset_size=None',
              'train_dataloader.batch_size=20',
              'train_dataloader.num_workers=0',
              'train_dataloader.persistent_workers=False',
              'train_cfg.max_epochs=1', 'val_dataloader=None', 'val_cfg=None',
              'val_evaluator=None')
    assert osp.isfile(tmp_path / 'train' / 'epoch_1.pth')
    out = run_clean(venv, 'tools/test.py',
                    'configs/downstream/knn/knn_resnet18_fmnist.py',
                    str(tmp_path / 'train' / 'epoch_1.pth'), '--work-dir',
                    str(tmp_path / 'test'), '--cfg-options', *data[1:],
                    'test_dataloader.dataset.bank.subset_size=None',
                    'test_dataloader.num_workers=0', 'test_evaluator.0.ks=[5]')
    assert 'knn/top1_k5_fine' in out and 'clustering/nmi_coarse' in out, out
    shutil.rmtree(venv)  # its own files besides the links; kept on failure


def training_configs():
    return sorted(
        osp.relpath(path, ROOT) for path in glob.glob(
            osp.join(ROOT, 'configs', '**', '*.py'), recursive=True)
        if '_base_' not in path and 'knn' not in osp.basename(path)
        and 'clustering' not in osp.basename(path))  # tools/test.py only


def named_gpus(config: str) -> int:
    """GPUs of the setting a config is named for: ``8xb32`` -> 8; else 8
    for ImageNet / COCO / VOC ones (OpenMMLab's default), 1 for the
    embedded ones."""
    name = osp.basename(config)
    match = re.search(r'(\d+)xb(\d+)', name)
    if match:
        return int(match.group(1))
    return 8 if re.search(r'in1k|coco|voc|_r50\.py', name) else 1


@pytest.mark.parametrize('config', training_configs())
def test_auto_scale_lr(config):
    """Every training config names its own total batch, so that
    ``--auto-scale-lr`` keeps the lr on the named GPUs and scales it
    linearly on others (mmengine's ``Runner.scale_lr``)."""
    args = cli.parse_args(train_tool.build_parser(),
                          [osp.join(ROOT, config), '--auto-scale-lr'])
    cfg = train_tool.merge_args(cli.load_config(args), args)
    batch, gpus = cfg.train_dataloader.batch_size, named_gpus(config)
    match = re.search(r'(\d+)xb(\d+)', osp.basename(config))
    assert match is None or int(match.group(2)) == batch
    assert cfg.auto_scale_lr.enable
    assert cfg.auto_scale_lr.base_batch_size == gpus * batch

    def lr_on(world_size):
        param = torch.nn.Parameter(torch.zeros(1))
        wrapper = OptimWrapper(torch.optim.SGD([param], lr=0.5))
        runner = SimpleNamespace(
            world_size=world_size,
            _train_dataloader=cfg.train_dataloader,
            param_schedulers=None,
            logger=MMLogger.get_current_instance())
        Runner.scale_lr(runner, wrapper, cfg.auto_scale_lr)
        return wrapper.optimizer.param_groups[0]['lr']

    assert lr_on(gpus) == 0.5
    assert lr_on(2 * gpus) == 1.0


def test_auto_scale_lr_needs_base_batch(tmp_path):
    config = tmp_path / 'no_base.py'
    config.write_text('train_dataloader = dict(batch_size=4)\n')
    args = cli.parse_args(train_tool.build_parser(),
                          [str(config), '--auto-scale-lr'])
    with pytest.raises(ValueError, match='no_base.py has no `auto_scale_lr'):
        train_tool.merge_args(Config.fromfile(str(config)), args)


def stub_python(folder, real=None):
    """A ``python`` that prints its arguments when run as ``-m`` (torchrun),
    else execs ``real``."""
    folder.mkdir(parents=True, exist_ok=True)
    stub = folder / 'python'
    tail = f'exec {real} "$@"' if real else 'exit 1'
    stub.write_text('#!/bin/bash\nif [ "$1" = -m ]; then echo "$0"; '
                    f"printf '%s\\n' \"$@\"; else {tail}; fi\n")
    stub.chmod(0o755)
    return str(stub)


def run_tool(args, **env):
    return subprocess.run([osp.join(ROOT, 'tools', args[0]), *args[1:]],
                          env={
                              **clean_env(), 'PATH': BARE_PATH,
                              **env
                          },
                          capture_output=True,
                          text=True)


def test_dist_tools_find_the_venv_python(tmp_path):
    """No venv on PATH: the venv of setup_env.sh (HIRL_MM_VENV) runs
    torchrun; HIRL_MM_PYTHON wins; arguments keep their spaces."""
    venv_python = stub_python(tmp_path / 'venv' / 'bin')
    out = run_tool(['dist_train.sh', 'a.py', '2', '--cfg-options', 'x=a b'],
                   HIRL_MM_VENV=str(tmp_path / 'venv'))
    lines = out.stdout.splitlines()
    assert lines[:3] == [venv_python, '-m', 'torch.distributed.run'], out
    assert '--nproc_per_node=2' in lines
    assert lines[-6:] == [
        osp.join(ROOT, 'tools', 'train.py'), 'a.py', '--launcher', 'pytorch',
        '--cfg-options', 'x=a b'
    ]
    other = stub_python(tmp_path / 'other')
    out = run_tool(['dist_test.sh', 'a.py', 'c.pth', '1'],
                   HIRL_MM_VENV=str(tmp_path / 'venv'),
                   HIRL_MM_PYTHON=other)
    lines = out.stdout.splitlines()
    assert lines[0] == other and lines[-5:] == [
        osp.join(ROOT, 'tools', 'test.py'), 'a.py', 'c.pth', '--launcher',
        'pytorch'
    ]
    ckpt = tmp_path / 'c.pth'
    ckpt.write_bytes(b'')
    out = run_tool(['transfer/dist_train_det.sh', 'a.py',
                    str(ckpt), '1'],
                   HIRL_MM_VENV=str(tmp_path / 'venv'))
    assert out.stdout.splitlines()[0] == venv_python, out.stderr


def test_slurm_train_runs_the_venv_python(tmp_path):
    srun = tmp_path / 'bin' / 'srun'
    srun.parent.mkdir()
    srun.write_text('#!/bin/bash\nprintf "%s\\n" "$@"\n')
    srun.chmod(0o755)
    venv_python = stub_python(tmp_path / 'venv' / 'bin')
    out = run_tool(['slurm_train.sh', 'part', 'job', 'a.py', 'w', '--amp'],
                   HIRL_MM_VENV=str(tmp_path / 'venv'),
                   PATH=f'{srun.parent}:{BARE_PATH}')
    lines = out.stdout.splitlines()
    assert lines[lines.index(venv_python):] == [
        venv_python, '-u',
        osp.join(ROOT, 'tools', 'train.py'), 'a.py', '--work-dir=w',
        '--launcher=slurm', '--amp'
    ], out.stderr


def test_dist_train_runs_torchrun_without_activated_venv():
    """The real thing, venv not on PATH: torchrun of the project's venv
    starts one tools/train.py, which answers --help."""
    if not osp.exists(osp.join(ROOT, '.venv', 'bin', 'python')):
        pytest.skip('no <repo>/.venv (set up by tools/setup_env.sh)')
    out = run_tool(['dist_train.sh', 'a.py', '1', '--help'],
                   PORT='29533',
                   OMP_NUM_THREADS='1')
    assert out.returncode == 0, out.stderr
    assert 'usage: train.py' in out.stdout and '--auto-scale-lr' in out.stdout


@pytest.mark.parametrize('tool,nargs', [('dist_train.sh', 2),
                                        ('dist_test.sh', 3),
                                        ('slurm_train.sh', 4)])
def test_shell_tools_usage(tool, nargs):
    out = run_tool([tool, '--help'])
    assert out.returncode == 0 and out.stdout.startswith(
        f'Usage: tools/{tool}')
    out = run_tool([tool] + ['x'] * (nargs - 1))
    assert out.returncode == 2 and 'Usage:' in out.stderr


@pytest.mark.parametrize('tool', ['train.py', 'test.py'])
def test_help_imports_no_torch(tool):
    """--help is parsed before torch, the runner or hirl_mm load."""
    code = ('import runpy, sys\n'
            f'sys.argv = ["{tool}", "--help"]\n'
            f'sys.path.insert(0, "{osp.join(ROOT, "tools")}")\n'
            'try:\n'
            f'    runpy.run_path("{osp.join(ROOT, "tools", tool)}", '
            'run_name="__main__")\n'
            'except SystemExit:\n'
            '    pass\n'
            'print("LOADED", sorted(m for m in ("torch", "hirl_mm", '
            '"mmpretrain") if m in sys.modules))\n')
    out = subprocess.run([sys.executable, '-c', code],
                         capture_output=True,
                         text=True,
                         check=True).stdout
    assert 'LOADED []' in out and '(default: none)' in out


def test_license_and_citation():
    with open(osp.join(ROOT, 'LICENSE')) as f:
        text = f.read()
    assert 'Apache License' in text and 'Version 2.0, January 2004' in text
    with open(osp.join(ROOT, 'CITATION.cff')) as f:
        cff = yaml.safe_load(f)
    assert cff['cff-version'] == '1.2.0' and cff['license'] == 'Apache-2.0'
    titles = [ref['title'] for ref in cff['references']]
    assert [t.split(':')[0] for t in titles[:2]] == ['HIRL', 'HCSC']
    assert titles[2].startswith('Self-Supervised Pyramid Representation')


def test_stamp_hash_without_hirl_mm_variables(tmp_path):
    """The stamp hash lists the HIRL_MM_* variables; with none set (a CI
    runner), grep finds nothing and must not end the script under
    ``set -o pipefail`` (it did, silently, before any install)."""
    script = open(osp.join(ROOT, 'tools', 'setup_env.sh')).read()
    line = re.search(r'^HASH=\$\(.*?\)\n', script, re.M | re.S).group(0)
    env = {k: v for k, v in os.environ.items() if not k.startswith('HIRL_MM_')}
    out = subprocess.run([
        'bash', '-c', 'set -euo pipefail; ROOT=$1; '
        'probe_gpu() { echo 0; }; probe_nvcc() { echo none; }; ' + line +
        'echo "$HASH"', 'bash', ROOT
    ],
                         env=env,
                         capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    assert re.fullmatch(r'[0-9a-f]{64}\n', out.stdout)
