"""Evaluate a checkpoint with any OpenMMLab config's test loop/metrics.

torch, the runner and hirl_mm are imported after the arguments are parsed:
``--help`` answers in a fraction of a second.
"""
from _cli import apply_cfg_options, load_config, make_parser, parse_args


def build_parser():
    parser = make_parser('Test a model', checkpoint=True)
    parser.add_argument(
        '--out', help='dump the metrics to this json/pkl file as well')
    return parser


def merge_args(cfg, args):
    """Apply the command line to ``cfg``, ``--cfg-options`` last."""
    from hirl_mm.utils import drop_pretrained_inits
    cfg.load_from = args.checkpoint
    if args.random_init:
        # init_weights must not load what a probe config names
        drop_pretrained_inits(cfg)
    if args.amp:
        cfg.test_cfg = dict(cfg.get('test_cfg') or {}, fp16=True)
    return apply_cfg_options(cfg, args)


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


def main(argv=None):
    args = parse_args(build_parser(), argv)
    from mmengine.runner import Runner

    import hirl_mm
    from hirl_mm.utils import (MIN_LOADED, MIN_LOADED_KEY, check_checkpoint,
                               check_load_from, finish_distributed,
                               setup_cpu_distributed)

    # torch >= 2.6 reads checkpoints with weights_only=True: the checkpoint
    # needs mmengine's globals on the allow-list. Installed by this explicit
    # call, not as a side effect of an import.
    hirl_mm.register_safe_globals()
    if args.checkpoint is not None:
        check_checkpoint(args.checkpoint)
    cfg = merge_args(load_config(args), args)
    setup_cpu_distributed(cfg)
    runner = Runner.from_cfg(cfg)
    if cfg.load_from:
        check_load_from(runner.model, cfg.load_from,
                        cfg.get(MIN_LOADED_KEY, MIN_LOADED))
    if args.random_init:
        init_weights(runner.model)
    metrics = runner.test()
    finish_distributed()
    if args.out:
        from mmengine.fileio import dump
        dump(metrics, args.out)


if __name__ == '__main__':
    main()
