"""Command-line code and the run entries shared by the tools.

``tools/train.py`` and ``tools/test.py`` take a config, ``--work-dir``,
``--amp``, ``--cfg-options``, ``--launcher`` and ``--local-rank``, and
resolve the work dir the same way (command line > config >
``./work_dirs/<config name>``). :func:`train` and :func:`test` run a
finished config: the two tools, ``tools/main_job.py`` and the analysis
scripts train and evaluate through them. The scripts run as
``python tools/train.py``, so this folder is on ``sys.path``; the leading
underscore says the module is not a tool itself. torch and the runner are
imported inside the functions: ``--help`` stays fast.
"""
import argparse
import os
import os.path as osp
from typing import List, Optional

from mmengine.config import Config, DictAction


def checkpoint_path(path: str) -> str:
    """An argparse ``type`` that refuses an empty path (an unset variable),
    which mmengine would report as ``FileNotFoundError:  can not be found``.
    """
    if not path.strip():
        raise argparse.ArgumentTypeError(
            'an empty path: is the variable that holds it set?')
    return path


def make_parser(description: str,
                checkpoint: bool = False) -> argparse.ArgumentParser:
    """A parser with the flags every train / test run takes.

    Args:
        description (str): What the tool does, for ``--help``.
        checkpoint (bool): Add a positional ``checkpoint`` after ``config``,
            or ``--random-init`` instead, as ``tools/test.py`` takes.
            Defaults to False.

    Returns:
        argparse.ArgumentParser: The tool adds its own flags to it.
    """
    parser = argparse.ArgumentParser(
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('config', help='config file path')
    if checkpoint:
        weights = parser.add_mutually_exclusive_group(required=True)
        weights.add_argument(
            'checkpoint',
            nargs='?',
            type=checkpoint_path,
            help='checkpoint file; its backbone.* weights must fill the '
            "model's backbone (see --cfg-options backbone_min_loaded)")
        weights.add_argument(
            '--random-init',
            action='store_true',
            help='no checkpoint: the model as initialised, a random-init '
            'baseline')
    parser.add_argument(
        '--work-dir',
        help='the dir to save logs and models; by default the config\'s '
        '`work_dir`, else ./work_dirs/<config name>')
    parser.add_argument(
        '--amp', action='store_true', help='enable automatic mixed precision')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, key=value; applied after '
        'every other flag')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument(
        '--local_rank',
        '--local-rank',
        type=int,
        default=0,
        help='set by torch.distributed.launch (torchrun sets LOCAL_RANK)')
    return parser


def parse_args(parser: argparse.ArgumentParser,
               argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Parse ``argv`` (default: ``sys.argv``) and export ``LOCAL_RANK``.

    Args:
        parser (argparse.ArgumentParser): From :func:`make_parser`.
        argv (List[str], optional): Arguments. Defaults to None.

    Returns:
        argparse.Namespace: The parsed arguments.
    """
    args = parser.parse_args(argv)
    # mmengine's launcher reads the rank from the environment only
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def default_work_dir(config: str) -> str:
    """``./work_dirs/<config file name without .py>``."""
    return osp.join('./work_dirs', osp.splitext(osp.basename(config))[0])


def load_config(args: argparse.Namespace) -> Config:
    """Read ``args.config`` and apply ``--launcher`` and ``--work-dir``.

    Args:
        args (argparse.Namespace): From :func:`parse_args`.

    Returns:
        Config: ``launcher`` and ``work_dir`` set; ``--cfg-options`` are
        left to :func:`apply_cfg_options`, after the tool's own flags.
    """
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = default_work_dir(args.config)
    return cfg


def apply_cfg_options(cfg: Config, args: argparse.Namespace) -> Config:
    """Merge ``--cfg-options`` into ``cfg``: they override every flag.

    Args:
        cfg (Config): The config, changed in place.
        args (argparse.Namespace): From :func:`parse_args`.

    Returns:
        Config: ``cfg``.
    """
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    return cfg


def replaced(value):
    """``value`` as a ``--cfg-options`` value that replaces a dict of the
    config instead of merging into it (mmengine's ``_delete_``)."""
    return dict(value, _delete_=True) if isinstance(value, dict) else value


def check_inputs(runner) -> None:
    """Stop before any compute if a backbone would not load its checkpoint
    (mmengine would only log the keys it misses) or if an epoch has no
    batch (mmengine's loops would run the hooks of empty epochs).

    Raises:
        ValueError: naming the checkpoint and the share of the backbone it
            fills, or the data set and batch sizes.
    """
    from hirl_mm.utils import (MIN_LOADED, MIN_LOADED_KEY, check_epoch_length,
                               check_load_from, check_pretrained_inits)
    cfg = runner.cfg
    min_loaded = cfg.get(MIN_LOADED_KEY, MIN_LOADED)
    check_pretrained_inits(runner.model, min_loaded)
    if cfg.get('load_from') and not cfg.get('resume'):
        check_load_from(runner.model, cfg.load_from, min_loaded)
    if runner.train_loop is not None:  # else mmengine's train() says so
        check_epoch_length(runner.train_loop.dataloader)


def build_runner(cfg: Config):
    """The runner of a training config, its inputs checked.

    Args:
        cfg (Config): The finished config (flags and ``--cfg-options``
            applied); ``model_wrapper_cfg`` may be set on it.

    Returns:
        Runner: mmengine's, or the config's ``runner_type``.
    """
    from mmengine.runner import Runner

    from hirl_mm.utils import setup_cpu_distributed
    setup_cpu_distributed(cfg)
    if 'runner_type' in cfg:
        from mmengine.registry import RUNNERS
        runner = RUNNERS.build(cfg)
    else:
        runner = Runner.from_cfg(cfg)
    check_inputs(runner)
    return runner


def train(cfg: Config):
    """Train a config: :func:`build_runner`, then ``runner.train()``.

    Args:
        cfg (Config): The finished config.

    Returns:
        Runner: The trained runner (its model, logs and data sets).
    """
    runner = build_runner(cfg)
    runner.train()
    return runner


def init_weights(model) -> None:
    """Initialise ``model`` as a training run starts it (``Runner.test``
    initialises nothing: a ViT's position embedding would stay zero), the
    same on every rank."""
    from mmengine.dist import broadcast
    from mmengine.model import is_model_wrapper
    model = model.module if is_model_wrapper(model) else model
    model.init_weights()
    for tensor in model.state_dict().values():
        broadcast(tensor)


def test(cfg: Config, random_init: bool = False) -> dict:
    """Evaluate a config with its test loop and metrics.

    Args:
        cfg (Config): The finished config; its ``load_from`` must fill the
            model's backbone (see ``backbone_min_loaded``).
        random_init (bool): Initialise the model as a training run would,
            for a config without ``load_from``. Defaults to False.

    Returns:
        dict: The metrics.
    """
    from mmengine.runner import Runner

    from hirl_mm.utils import (MIN_LOADED, MIN_LOADED_KEY, check_load_from,
                               setup_cpu_distributed)
    setup_cpu_distributed(cfg)
    runner = Runner.from_cfg(cfg)
    if cfg.load_from:
        check_load_from(runner.model, cfg.load_from,
                        cfg.get(MIN_LOADED_KEY, MIN_LOADED))
    if random_init:
        init_weights(runner.model)
    return runner.test()
