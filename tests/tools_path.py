"""Import helpers of the scripts under tools/."""
import importlib.util
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def load_tool(relpath: str):
    """Import a script as a module, its folder on ``sys.path`` as when it
    runs (``tools/train.py`` imports ``tools/_cli.py``)."""
    folder = osp.dirname(osp.join(ROOT, relpath))
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(
        osp.splitext(osp.basename(relpath))[0], osp.join(ROOT, relpath))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_label_subset = load_tool(
    'tools/dataset_converters/make_label_subset.py').make_label_subset
