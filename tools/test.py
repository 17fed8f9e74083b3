"""Evaluate a checkpoint with any OpenMMLab config's test loop/metrics.

torch, the runner and hirl_mm are imported after the arguments are parsed:
``--help`` answers in a fraction of a second.
"""
from _cli import apply_cfg_options, load_config, make_parser, parse_args, test


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


def main(argv=None):
    args = parse_args(build_parser(), argv)
    import hirl_mm
    from hirl_mm.utils import check_checkpoint, finish_distributed

    # torch >= 2.6 reads checkpoints with weights_only=True: the checkpoint
    # needs mmengine's globals on the allow-list. Installed by this explicit
    # call, not as a side effect of an import.
    hirl_mm.register_safe_globals()
    if args.checkpoint is not None:
        check_checkpoint(args.checkpoint)
    metrics = test(merge_args(load_config(args), args), args.random_init)
    finish_distributed()
    if args.out:
        from mmengine.fileio import dump
        dump(metrics, args.out)


if __name__ == '__main__':
    main()
