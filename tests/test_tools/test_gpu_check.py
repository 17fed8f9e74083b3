"""tools/dev/gpu_check.py without building anything: arguments, the table and
JSON, a failing step, the time boxes."""
import json
import sys
import time

import pytest
from tools_path import load_tool

gpu_check = load_tool('tools/dev/gpu_check.py')
Check, StepTimeout = gpu_check.Check, gpu_check.StepTimeout


class FakeClock:

    def __init__(self):
        self.now = 0.

    def __call__(self):
        return self.now


def test_arguments(tmp_path, monkeypatch):
    monkeypatch.delenv('OUT', raising=False)
    args = gpu_check.parse_args([])
    assert not args.cpu and args.budget_s == 540
    assert args.out.endswith('gpu_check')
    monkeypatch.setenv('OUT', str(tmp_path))
    args = gpu_check.parse_args(['--cpu', '--budget-s', '60'])
    assert args.cpu and args.budget_s == 60 and args.out == str(tmp_path)
    with pytest.raises(SystemExit):
        gpu_check.parse_args(['--budget-s', '0'])
    with pytest.raises(SystemExit):  # checkpoints would come back in $OUT
        gpu_check.parse_args(
            ['--out',
             str(tmp_path), '--work-dir',
             str(tmp_path / 'w')])
    with pytest.raises(SystemExit):
        gpu_check.parse_args(['--steps', 'nonsense'])


def test_a_failing_step_does_not_stop_the_others(tmp_path):
    clock = FakeClock()
    check = Check(100, str(tmp_path), meta=dict(mode='cpu'), clock=clock)

    def fails(deadline):
        clock.now += 3
        raise RuntimeError('exit status 1')

    def passes(deadline):
        clock.now += 2
        return dict(summary='4 passed', passed=4)

    check.step('one', fails, cap=50)
    check.step('two', passes, cap=50)
    check.step('three', passes, cap=50, needs='one')
    check.step('four', lambda d: dict(status='skipped', reason='no GPU'), 50)
    assert [s['status']
            for s in check.steps] == ['failed', 'ok', 'skipped', 'skipped']
    assert check.steps[0]['reason'] == 'RuntimeError: exit status 1'
    assert check.steps[0]['seconds'] == 3 and check.steps[1]['seconds'] == 2
    assert check.steps[2]['reason'] == 'needs step one'
    saved = json.loads((tmp_path / 'gpu_check.json').read_text())
    assert saved['mode'] == 'cpu'
    assert [s['name']
            for s in saved['steps']] == ['one', 'two', 'three', 'four']
    assert saved['steps'][1]['detail'] == dict(summary='4 passed', passed=4)
    table = (tmp_path / 'gpu_check.md').read_text().splitlines()
    assert table[0] == '| step | status | seconds | result |'
    assert table[2] == '| one | failed | 3.0 | RuntimeError: exit status 1 |'
    assert table[3] == '| two | ok | 2.0 | 4 passed |'
    assert table[5] == '| four | skipped | 0.0 | no GPU |'


def test_time_boxes_keep_the_budget(tmp_path):
    clock = FakeClock()
    check = Check(100, str(tmp_path), clock=clock)
    boxes = []

    def record(deadline):
        boxes.append(round(deadline - time.monotonic()))
        clock.now += 70

    check.step('a', record, cap=90, reserve=20)  # 100 - 20 = 80 < 90
    check.step('b', record, cap=90)  # 30 left
    check.step('c', record, cap=90)  # none left
    assert boxes == [80, 30]
    assert check.steps[2]['status'] == 'skipped'
    assert check.steps[2]['reason'].startswith('no time left')


def test_run_kills_the_whole_process_group(tmp_path):
    log = tmp_path / 'logs' / 'slow.log'
    # a child that would outlive its parent without the group kill
    cmd = [
        sys.executable, '-c',
        'import subprocess, sys, time; p = subprocess.Popen([sys.executable, '
        '"-c", "import time; time.sleep(60)"]); print("child", p.pid, '
        'flush=True); time.sleep(60)'
    ]
    start = time.monotonic()
    with pytest.raises(StepTimeout, match='timed out'):
        gpu_check.run(cmd, str(log), time.monotonic() + 2)
    assert time.monotonic() - start < 15
    child = int(log.read_text().split('child ')[1].split()[0])
    for _ in range(50):  # gone, or a zombie nobody reaps yet
        try:
            with open(f'/proc/{child}/stat') as f:
                if f.read().split(')')[1].split()[0] == 'Z':
                    break
        except FileNotFoundError:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f'process {child} outlived the time box')
    assert gpu_check.run([sys.executable, '-c', 'import sys; sys.exit(3)'],
                         str(log),
                         time.monotonic() + 30) == 3


def test_training_summary_and_science_plan():
    records = [
        dict(lr=0.05, epoch=1, iter=2, step=2),
        dict(loss=0.1, epoch=1, iter=2, time=3.0),
        dict(loss=0.2, loss_spd=1.5, epoch=2, iter=4, time=1.0),
        dict(loss=0.3, loss_spd=1.4, epoch=3, iter=6, time=2.0),
    ]
    summary = gpu_check.training_summary(records)
    assert summary['epochs'] == [1, 2, 3]
    assert summary['loss_spd'] == 1.4 and summary['loss_spd_finite']
    assert summary['iter_seconds'] == 1.5  # the first record is warm-up
    records[-1]['loss_spd'] = float('nan')
    assert not gpu_check.training_summary(records)['loss_spd_finite']
    assert not gpu_check.training_summary(records[:2])['loss_spd_finite']

    # 60 s per epoch of 60k images, 20 s per run besides training
    assert gpu_check.science_plan(3000, 1e-3, 20, 3) == dict(
        subset='all', seeds=[0, 1, 2], epochs=8, warmup=2)
    # 3 seeds would get 1 epoch: one seed with more
    assert gpu_check.science_plan(800, 1e-3, 20, 3) == dict(
        subset='all', seeds=[0], epochs=6, warmup=2)
    # not 3 epochs of all images: 20k
    assert gpu_check.science_plan(300, 1e-3, 20, 3) == dict(
        subset='20000', seeds=[0], epochs=6, warmup=2)
    assert gpu_check.science_plan(50, 1e-3, 20, 3) is None


def test_junit_counts(tmp_path):
    xml = tmp_path / 'r.xml'
    xml.write_text('<testsuites><testsuite name="pytest" errors="1" '
                   'failures="2" skipped="3" tests="10"/></testsuites>')
    assert gpu_check.junit_counts(str(xml)) == dict(
        tests=10, failed=2, errors=1, skipped=3, passed=4)
    assert gpu_check.junit_counts(str(tmp_path / 'missing.xml')) == {}


def test_science_summary_pairs_seeds():

    def row(method, value):
        return dict(method=method, knn_top1_fine=value, nmi_fine=value + 1)

    seeds = [
        dict(
            seed=s,
            report=dict(runs=[row('SimSiam', b),
                              row('HIRL-SimSiam', h)]))
        for s, b, h in ((0, 50., 51.5), (1, 52., 51.))
    ]
    out = gpu_check.science_summary(seeds)
    assert out['seeds_done'] == [0, 1]
    assert out['per_seed']['SimSiam']['knn_top1_fine'] == [50., 52.]
    assert out['paired'] == dict(knn_top1_fine=[1.5, -1.], nmi_fine=[1.5, -1.])
    assert 'paired HIRL - SimSiam: knn_top1_fine +0.25' in out['summary']
