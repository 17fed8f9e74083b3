"""tools/main_job.py: arguments, the training configs it builds, the report
(mean ± std, paired differences) and one whole run at toy size."""
import argparse
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
from unittest.mock import MagicMock

import pytest
from tools_path import ROOT, load_tool

main_job = load_tool('tools/main_job.py')


def test_help_shows_defaults_without_heavy_imports():
    # python puts a script's folder first on sys.path: tools/_cli.py
    code = ('import sys; sys.argv = ["main_job.py", "--help"]\n'
            'sys.path.insert(0, "tools")\n'
            'import runpy\n'
            'try:\n'
            '    runpy.run_path("tools/main_job.py", run_name="__main__")\n'
            'except SystemExit:\n'
            '    pass\n'
            'print("heavy:", sorted(m for m in ("torch", "hirl_mm", '
            '"mmpretrain") if m in sys.modules))\n')
    out = subprocess.run([sys.executable, '-c', code],
                         cwd=ROOT,
                         capture_output=True,
                         text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert '(default: 4000)' in out.stdout
    assert '(default: cpu)' in out.stdout
    assert 'heavy: []' in out.stdout


def test_arguments():
    args = main_job.parse_args([])
    assert (args.subset, args.epochs, args.warmup, args.seeds, args.device,
            args.amp, args.data_root,
            args.cfg_options) == (4000, 8, 3, [0], 'cpu', 'none', None, {})
    assert main_job.parse_args(['--subset', 'all']).subset is None
    assert main_job.parse_args(['--subset', '0']).subset is None
    assert main_job.parse_args(['--subset', '200']).subset == 200
    with pytest.raises(argparse.ArgumentTypeError, match="0 or 'all'"):
        main_job.subset_size('-3')
    for argv in (['--subset', 'many'], ['--amp',
                                        'bf16'], ['--epochs',
                                                  '0'], ['--device', 'tpu']):
        with pytest.raises(SystemExit):
            main_job.parse_args(argv)
    args = main_job.parse_args(
        ['--device', 'cuda', '--amp', 'bf16', '--cfg-options', 'a.b=2'])
    assert (args.amp, args.cfg_options) == ('bf16', {'a.b': 2})


def test_training_config(fake_fmnist):
    args = main_job.parse_args([
        '--subset', 'all', '--epochs', '5', '--warmup', '2', '--interval', '2',
        '--data-root',
        str(fake_fmnist), '--work-dir', 'w'
    ])
    cfg = main_job.build_cfg('HIRL-SimSiam', args, seed=1)
    assert cfg.work_dir == osp.join('w', 'hirl-simsiam_seed1')
    dataset = cfg.train_dataloader.dataset
    assert (dataset.subset_size, dataset.source_root) == (None,
                                                          str(fake_fmnist))
    assert cfg.train_cfg.max_epochs == 5 and cfg.randomness.seed == 1
    assert cfg.param_scheduler[0].T_max == 5
    hook, = [
        h for h in cfg.custom_hooks if h.type == 'HierarchicalPrototypeHook'
    ]
    assert (hook.warmup_epochs, hook.interval,
            hook.feature_source) == (2, 2, 'extract')
    # the hook's own k-means defaults, the reference's: no init override
    assert 'init' not in (hook.get('kmeans_cfg') or {})
    assert cfg.optim_wrapper.get('type', 'OptimWrapper') == 'OptimWrapper'
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'

    args = main_job.parse_args([
        '--device', 'cuda', '--amp', 'bf16', '--cfg-options',
        'train_dataloader.batch_size=256'
    ])
    cfg = main_job.build_cfg('SimSiam', args, seed=0)
    assert (cfg.optim_wrapper.type, cfg.optim_wrapper.dtype) == \
        ('AmpOptimWrapper', 'bfloat16')
    assert cfg.env_cfg.dist_cfg.backend == 'nccl'
    assert cfg.train_dataloader.batch_size == 256

    args = main_job.parse_args([
        '--feature-source', 'memory_bank', '--bank-momentum', '0.5',
        '--bank-views', 'all'
    ])
    hook, = [
        h for h in main_job.build_cfg('HIRL-MoCo v2', args, 0).custom_hooks
        if h.type == 'HierarchicalPrototypeHook'
    ]
    assert (hook.feature_source, hook.bank_momentum, hook.bank_views) == \
        ('memory_bank', 0.5, 'all')


def test_training_config_is_cfg_options():
    """The main job's edits of a method's config are ``--cfg-options``:
    ``tools/train.py`` given them builds the same config."""
    cli = load_tool('tools/_cli.py')
    train_tool = load_tool('tools/train.py')
    args = main_job.parse_args([
        '--epochs', '3', '--feature-source', 'memory_bank', '--cfg-options',
        'train_dataloader.batch_size=32'
    ])
    for name in ('HIRL-SimSiam', 'DINO'):
        config = osp.join(ROOT, main_job.METHODS[name])
        options = main_job.run_options(
            main_job.Config.fromfile(config), name, args, 2)
        argv = [config, '--cfg-options'] + [
            f'{key}={value}' for key, value in options.items()
        ] + ['train_dataloader.batch_size=32']
        train_args = cli.parse_args(train_tool.build_parser(), argv)
        expected = train_tool.merge_args(
            cli.load_config(train_args), train_args).to_dict()
        expected.pop('launcher')
        assert main_job.build_cfg(name, args, 2).to_dict() == expected


def fake_run(method, seed, knn, nmi, tree=None):
    row = dict(method=method, seed=seed, train_seconds=120)
    for level in main_job.LEVELS:
        row.update({
            f'knn_top1_{level}': knn,
            f'nmi_{level}': nmi,
            f'ami_{level}': nmi,
            f'ari_{level}': nmi / 2,
            f'acc_{level}': 50.0
        })
    if tree is not None:
        row['prototypes'] = dict(
            clusters_per_level=[100, 20, 5],
            non_empty_per_level=[100, 20, 5],
            largest_percent_per_level=[3.0, 10.0, 40.0],
            scores={
                f'level{lvl}_{lab}_{m}': tree
                for lvl in range(3)
                for lab in main_job.LEVELS
                for m in ('nmi', 'acc')
            })
    return row


def test_report_pairs_each_seed(tmp_path):
    results = []
    for seed, (base, hirl) in enumerate([(68.0, 69.0), (68.5, 68.0),
                                         (67.5, 69.5)]):
        results.append(fake_run('SimSiam', seed, base, 30.0 + seed))
        results.append(
            fake_run('HIRL-SimSiam', seed, hirl, 33.0 + seed, tree=40.0))
    args = main_job.parse_args(
        ['--seeds', '0', '1', '2', '--work-dir',
         str(tmp_path)])
    text = main_job.report(results, args, 'python tools/main_job.py --seeds '
                           '0 1 2')
    assert 'Command: `python tools/main_job.py --seeds 0 1 2`' in text
    assert '| SimSiam | 68.00 ± 0.41 |' in text
    assert '| HIRL-SimSiam | 68.83 ± 0.62 |' in text
    # per seed: +1.0, -0.5, +2.0; mean +0.83
    assert '| HIRL-SimSiam - SimSiam | +0.83 (+1.00, -0.50, +2.00) |' in text
    assert '+3.00 (+3.00, +3.00, +3.00)' in text  # NMI fine
    assert '| HIRL-SimSiam | 2 (5) | 5.00 ± 0.00 | 40.00 ± 0.00 |' in text

    saved = json.load(open(tmp_path / 'report.json'))
    assert saved['command'].endswith('--seeds 0 1 2')
    diff = saved['paired']['HIRL-SimSiam - SimSiam']['knn_top1_fine']
    assert diff == dict(seeds=[0, 1, 2], per_seed=[1.0, -0.5, 2.0], mean=0.83)
    mean, std = saved['summary']['HIRL-SimSiam']['stats'][
        'tree_level2_coarse_nmi']
    assert (mean, std) == (40.0, 0.0)
    assert (tmp_path / 'report.md').read_text() == text


def test_merge_pairs_runs_of_two_reports(tmp_path):
    """Base and HIRL runs made by two main jobs side by side: one report
    with the paired differences; reports of another setting refused."""
    for name, method, knn in (('base', 'SimSiam', 68.0),
                              ('hirl', 'HIRL-SimSiam', 69.0)):
        runs = [fake_run(method, seed, knn + seed, 30.0) for seed in (0, 1)]
        args = main_job.parse_args([
            '--methods', method, '--seeds', '0', '1', '--work-dir',
            str(tmp_path / name)
        ])
        main_job.report(runs, args, f'main_job --methods {method}')
    argv = [
        '--merge',
        str(tmp_path / 'base' / 'report.json'),
        str(tmp_path / 'hirl' / 'report.json'), '--work-dir',
        str(tmp_path / 'merged')
    ]
    text = main_job.merge_reports(main_job.parse_args(argv), argv)
    assert '| HIRL-SimSiam - SimSiam | +1.00 (+1.00, +1.00) |' in text
    assert 'main_job --methods SimSiam + main_job --methods HIRL-SimSiam' \
        in text

    other = main_job.parse_args(
        ['--epochs', '3', '--work-dir',
         str(tmp_path / 'other')])
    main_job.report([fake_run('SimSiam', 0, 68.0, 30.0)], other, 'x')
    argv = [
        '--merge',
        str(tmp_path / 'base' / 'report.json'),
        str(tmp_path / 'other' / 'report.json')
    ]
    with pytest.raises(ValueError, match='different settings'):
        main_job.merge_reports(main_job.parse_args(argv), argv)

    # the merged report states the reports' setting, not --merge's defaults
    for seed in (0, 1):
        args = main_job.parse_args([
            '--epochs', '3', '--feature-source', 'memory_bank', '--seeds',
            str(seed), '--work-dir',
            str(tmp_path / f'bank{seed}')
        ])
        main_job.report([fake_run('HIRL-SimSiam', seed, 68.0, 30.0)], args,
                        'x')
    argv = ['--merge'] + [
        str(tmp_path / f'bank{seed}' / 'report.json') for seed in (0, 1)
    ] + ['--work-dir', str(tmp_path / 'bank')]
    text = main_job.merge_reports(main_job.parse_args(argv), argv)
    assert '3 epochs, prototypes from epoch 3 every 1 (features: ' \
        "memory_bank), seeds [0, 1], device cpu;" in text


def test_whole_job_at_toy_size(tmp_path, fake_fmnist, monkeypatch):
    """HIRL-SimSiam on the 40-image Fashion-MNIST: trained, evaluated,
    pictured (the hook's scalars over epochs too) and reported."""
    # --device cpu hides the GPUs of this process: undone after the test
    monkeypatch.delenv('CUDA_VISIBLE_DEVICES', raising=False)
    work = tmp_path / 'job'
    main_job.main([
        '--methods', 'HIRL-SimSiam', '--subset', 'all', '--epochs', '2',
        '--warmup', '1', '--knn-k', '5', '--data-root',
        str(fake_fmnist), '--work-dir',
        str(work), '--cfg-options', 'train_dataloader.batch_size=10',
        'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        'model.num_clusters=[8,4,2]', 'model.head.num_neg_path=4'
    ])
    saved = json.load(open(work / 'report.json'))
    run, = saved['runs']
    tree = run['prototypes']
    assert tree['images'] == 40 and tree['clusters_per_level'] == [8, 4, 2]
    assert 0 < tree['largest_percent_per_level'][2] <= 100
    assert 0 <= run['knn_top1_fine'] <= 100
    pictures = run['pictures']
    assert set(pictures) == {
        'tsne', 'tree', 'gallery', 'prototype_stats', 'online_evaluation'
    }
    assert all(osp.isfile(p) for p in pictures.values())
    assert 'Command: `' in (work / 'report.md').read_text()

    # --resume: the finished run is reported from its result.json, a run
    # with only its final checkpoint is evaluated, not trained again
    argv = [
        '--methods', 'HIRL-SimSiam', '--subset', 'all', '--epochs', '2',
        '--warmup', '1', '--knn-k', '5', '--data-root',
        str(fake_fmnist), '--work-dir',
        str(work), '--resume', '--cfg-options',
        'train_dataloader.batch_size=10', 'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        'model.num_clusters=[8,4,2]', 'model.head.num_neg_path=4'
    ]
    monkeypatch.setattr(main_job, 'train', lambda cfg: 1 / 0)
    main_job.main(argv)
    assert json.load(open(work / 'report.json'))['runs'] == [run]
    os.remove(work / 'hirl-simsiam_seed0' / 'result.json')
    main_job.main(argv)
    again, = json.load(open(work / 'report.json'))['runs']
    assert again['train_seconds'] is None
    for key in ('knn_top1_fine', 'nmi_fine', 'prototypes'):
        assert again[key] == run[key]
    assert set(again['pictures']) == set(pictures)

    # the memory bank's diagnosis reads the run's config and checkpoint
    diag = load_tool('tools/analysis/bank_diagnosis.py')
    rows = diag.diagnose(
        str(work / 'hirl-simsiam_seed0'), diag.parse_args(['unused']))
    assert list(rows) == ['extract'] + list(diag.VARIANTS) + [
        f'train, 2 views, momentum {m} over 5 epochs' for m in diag.MOMENTA
    ]
    for row in rows.values():
        assert all(0 <= v <= 100 for v in row.values())
        assert row['largest root (%)'] >= 50  # 2 roots
    with pytest.raises(FileNotFoundError, match='needs one config'):
        diag.load_run(str(tmp_path), 'epoch_*.pth')


def test_a_failed_run_is_listed_and_the_others_reported(tmp_path, monkeypatch):

    def run_one(name, args, seed):
        if seed == 1:
            raise FloatingPointError('loss is NaN')
        return fake_run(name, seed, 68.0 + seed, 30.0)

    monkeypatch.setattr(main_job, 'run_one', run_one)
    monkeypatch.setitem(sys.modules, 'hirl_mm', MagicMock())
    monkeypatch.delenv('CUDA_VISIBLE_DEVICES', raising=False)
    with pytest.raises(
            SystemExit, match='1 run\\(s\\) failed: SimSiam seed 1'):
        main_job.main([
            '--methods', 'SimSiam', '--seeds', '0', '1', '2', '--work-dir',
            str(tmp_path)
        ])
    saved = json.load(open(tmp_path / 'report.json'))
    assert [r['seed'] for r in saved['runs']] == [0, 2]
    assert saved['failed'][0]['error'] == "FloatingPointError('loss is NaN')"
    text = (tmp_path / 'report.md').read_text()
    assert 'SimSiam seed 1 FAILED (not in the tables)' in text
    assert '| SimSiam | 69.00 ± 1.00 |' in text


def test_compare_reports_pairs_one_method_of_two_settings(tmp_path):
    compare = load_tool('tools/analysis/compare_reports.py')
    for name, knn in (('a', 68.0), ('b', 67.0)):
        args = main_job.parse_args([
            '--methods', 'HIRL-SimSiam', '--seeds', '0', '1', '--work-dir',
            str(tmp_path / name)
        ])
        main_job.report([
            fake_run('HIRL-SimSiam', seed, knn + seed, 30.0, tree=40.0)
            for seed in (0, 1)
        ], args, 'x')
    text = compare.compare(
        str(tmp_path / 'a' / 'report.json'),
        str(tmp_path / 'b' / 'report.json'), 'HIRL-SimSiam')
    assert '| knn_top1_fine | 68.50 ± 0.50 | 67.50 ± 0.50 | -1.00 ' \
        '(-1.00, -1.00) |' in text
    assert '| tree_level2_coarse_nmi | 40.00 ± 0.00 |' in text
    with pytest.raises(ValueError, match="no run of 'SimSiam'"):
        compare.compare(
            str(tmp_path / 'a' / 'report.json'),
            str(tmp_path / 'b' / 'report.json'), 'SimSiam')


def test_bank_diagnosis_sums_views_in_sample_order():
    """Views of shuffled batches are summed per image, in sample order."""
    import torch
    diag = load_tool('tools/analysis/bank_diagnosis.py')
    model = MagicMock()
    model.data_preprocessor = lambda data, training: data
    model.extract_proto_feat = lambda x: x
    images = torch.randn(6, 3)
    batches = [
        dict(
            inputs=[images[ids] * 2, images[ids] * 3],
            data_samples=[argparse.Namespace(sample_idx=i) for i in ids])
        for ids in ([4, 0, 2], [5, 1, 3])
    ]
    unit = torch.nn.functional.normalize(images, dim=1)
    torch.testing.assert_close(diag.augmented(model, batches, 1, 1), unit)
    torch.testing.assert_close(diag.augmented(model, batches, 2, 3), 6 * unit)


def write_folder(root, classes=('cat', 'dog'), train=3, val=2) -> None:
    """ImageNet style: ``train/<class>/`` and ``val/<class>/`` 8 x 8 PNGs."""
    from PIL import Image
    for split, count in (('train', train), ('val', val)):
        for name in classes:
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                Image.new('RGB', (8, 8)).save(folder / f'{i}.png')


def test_a_folder_is_checked_and_counted(tmp_path, fake_fmnist):
    assert main_job.data_root_folder(str(fake_fmnist)) is None
    write_folder(tmp_path / 'ok')
    (tmp_path / 'ok' / 'train' / 'cat' / 'notes.txt').write_text('x')
    assert main_job.data_root_folder(str(tmp_path / 'ok')) == dict(
        classes=['cat', 'dog'], train=6, val=4)

    def fails(root, match):
        with pytest.raises(ValueError, match=match):
            main_job.data_root_folder(str(root))

    fails(tmp_path / 'missing', 'is not a folder')
    (tmp_path / 'empty').mkdir()
    fails(tmp_path / 'empty', 'neither the Fashion-MNIST idx files')
    write_folder(tmp_path / 'no-val')
    shutil.rmtree(tmp_path / 'no-val' / 'val')
    fails(tmp_path / 'no-val', 'has no val/ folder')
    (tmp_path / 'flat' / 'train').mkdir(parents=True)
    (tmp_path / 'flat' / 'val').mkdir()
    fails(tmp_path / 'flat', 'train has no class sub-folders')
    write_folder(tmp_path / 'hollow')
    (tmp_path / 'hollow' / 'val' / 'cat' / '0.png').unlink()
    (tmp_path / 'hollow' / 'val' / 'cat' / '1.png').unlink()
    fails(tmp_path / 'hollow', 'val/cat holds no images')
    write_folder(tmp_path / 'uneven')
    shutil.copytree(tmp_path / 'uneven' / 'train' / 'cat',
                    tmp_path / 'uneven' / 'train' / 'fox')
    fails(tmp_path / 'uneven', r"only in train/: \['fox'\]")
    write_folder(tmp_path / 'one', classes=('cat', ))
    fails(tmp_path / 'one', 'one class folder')

    # the command line says which option does not apply to a folder
    root = str(tmp_path / 'ok')
    for argv, match in ((['--data-root',
                          str(tmp_path / 'flat')], 'no class sub-folders'),
                        (['--data-root', root, '--subset',
                          '100'], '--subset counts Fashion-MNIST images'),
                        (['--data-root', root, '--methods',
                          'SwAV'], 'a folder trains')):
        with pytest.raises(SystemExit):
            main_job.parse_args(argv)


def test_a_folder_run_reads_the_folder_everywhere(tmp_path, monkeypatch):
    monkeypatch.delenv('DATA_ROOT', raising=False)
    write_folder(tmp_path / 'data')
    root = str(tmp_path / 'data')
    args = main_job.parse_args(['--data-root', root, '--work-dir', 'w'])
    config = load_tool('tools/_image_folder.py').FOLDER_CONFIG
    folder = main_job.Config.fromfile(osp.join(ROOT, config))
    for name in main_job.FOLDER_METHODS:
        cfg = main_job.build_cfg(name, args, seed=0)
        dataset = cfg.train_dataloader.dataset
        assert (dataset.type, dataset.data_root, dataset.data_prefix,
                dataset.with_label) == ('CustomDataset', root, 'train', True)
        assert 'subset_size' not in dataset
        # the folder config's pre-processing, not Fashion-MNIST's
        assert cfg.data_preprocessor == folder.data_preprocessor
        assert dataset.pipeline == folder.train_pipeline
        for hook in cfg.custom_hooks:
            if hook.type == 'HierarchicalPrototypeHook':
                assert hook.pipeline == folder.feat_pipeline
        val = cfg.get('val_dataloader')
        if val:  # a kNN monitor while training reads the folder too
            assert [(d.data_root, d.data_prefix)
                    for d in (val.dataset.bank, val.dataset.query)
                    ] == [(root, 'train'), (root, 'val')]
        test = main_job.knn_test_cfg(cfg, 'ckpt.pth', 5)
        knn = test.test_dataloader.dataset
        assert [(d.data_root, d.data_prefix, d.pipeline)
                for d in (knn.bank, knn.query)
                ] == [(root, 'train', folder.feat_pipeline),
                      (root, 'val', folder.feat_pipeline)]
        assert test.data_preprocessor.mean == folder.data_preprocessor.mean


def test_a_folder_too_small_for_a_run_stops_before_training(
        tmp_path, monkeypatch):
    # --device cpu hides the GPUs of this process: undone after the test
    monkeypatch.delenv('CUDA_VISIBLE_DEVICES', raising=False)
    write_folder(tmp_path / 'data', train=30)
    root = str(tmp_path / 'data')
    args = main_job.parse_args(['--data-root', root])
    with pytest.raises(
            ValueError, match='SimSiam: 60 train/ images make no batch of 64'):
        main_job.check_folder_fits(args)
    args = main_job.parse_args([
        '--data-root', root, '--methods', 'HIRL-SimSiam', '--cfg-options',
        'train_dataloader.batch_size=20'
    ])
    with pytest.raises(
            ValueError, match=r'cannot fill the prototype tree \[100, 20, 5'):
        main_job.check_folder_fits(args)
    with pytest.raises(SystemExit, match='model.num_clusters'):
        main_job.main([
            '--data-root', root, '--methods', 'HIRL-SimSiam', '--cfg-options',
            'train_dataloader.batch_size=20'
        ])
    args.cfg_options['model.num_clusters'] = [30, 6, 2]
    main_job.check_folder_fits(args)


def test_a_folder_report_has_the_class_folders_alone(tmp_path):
    """One label level: no coarse column, pair or tree score."""
    write_folder(tmp_path / 'data')
    results = []
    for seed in (0, 1):
        for name, knn, tree in (('SimSiam', 60.0, None), ('HIRL-SimSiam',
                                                          62.0 + seed, 45.0)):
            row = fake_run(name, seed, knn, 30.0, tree)
            for key in [k for k in row if k.endswith('_coarse')]:
                del row[key]
            if tree is not None:
                scores = row['prototypes']['scores']
                for key in [k for k in scores if '_coarse_' in k]:
                    del scores[key]
            results.append(row)
    args = main_job.parse_args([
        '--data-root',
        str(tmp_path / 'data'), '--seeds', '0', '1', '--work-dir',
        str(tmp_path / 'job')
    ])
    text = main_job.report(results, args, 'main_job --data-root data')
    assert f'{tmp_path / "data"}: 6 train/ images in 2 classes' in text
    assert 'the 4 val/ images as queries), k-means on the val/ features ' \
        '(2 clusters, one per class)' in text
    assert '| knn_top1_fine | nmi_fine | ami_fine | ari_fine | acc_fine |' \
        in text
    assert '| HIRL-SimSiam - SimSiam | +2.50 (+2.00, +3.00) |' in text
    assert '| NMI fine | ACC fine |' in text
    assert 'coarse' not in text
