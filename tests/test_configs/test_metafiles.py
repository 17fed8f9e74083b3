"""The OpenMMLab model index: ``model-index.yml``, the ``metafile.yml`` and
``README.md`` of every algorithm folder, and the configs they list."""
import glob
import os
import os.path as osp
import re

import pytest
import yaml
from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = osp.join(ROOT, 'configs')
# folders of configs that are not pre-training algorithms
NOT_ALGORITHMS = ('_base_', 'downstream')


def _load(path: str) -> dict:
    with open(osp.join(ROOT, path)) as f:
        return yaml.safe_load(f)


def _folders() -> list:
    return sorted(
        d for d in os.listdir(CONFIGS) if osp.isdir(osp.join(CONFIGS, d))
        and d != '_base_' and not d.startswith(('.', '__')))


METAFILES = sorted(
    osp.relpath(p, ROOT)
    for p in glob.glob(osp.join(CONFIGS, '*', 'metafile.yml')))
MODELS = [(path, model) for path in METAFILES
          for model in _load(path)['Models']]


def test_model_index_imports_every_metafile():
    imports = _load('model-index.yml')['Import']
    assert len(imports) == len(set(imports))
    assert sorted(imports) == METAFILES
    algorithms = [d for d in _folders() if d not in NOT_ALGORITHMS]
    assert METAFILES == [f'configs/{d}/metafile.yml' for d in algorithms]


@pytest.mark.parametrize('folder', _folders())
def test_every_folder_has_a_readme(folder):
    assert osp.isfile(osp.join(CONFIGS, folder, 'README.md'))


@pytest.mark.parametrize('path', METAFILES)
def test_collections(path):
    meta = _load(path)
    names = [c['Name'] for c in meta['Collections']]
    for collection in meta['Collections']:
        assert collection['Paper']['Title'] and collection['Paper']['URL']
        assert osp.isfile(osp.join(ROOT, collection['README']))
    for model in meta['Models']:
        assert model['In Collection'] in names


@pytest.mark.parametrize(
    'path,model', MODELS, ids=[m['Name'] for _, m in MODELS])
def test_model_entry_matches_its_config(path, model):
    assert model['Name'] == osp.splitext(osp.basename(model['Config']))[0]
    # no released weights: the field is left out or null
    assert model.get('Weights') is None
    cfg = Config.fromfile(osp.join(ROOT, model['Config']))
    assert model['Metadata']['Epochs'] == cfg.train_cfg.max_epochs
    per_gpu = cfg.train_dataloader.batch_size
    gpus_batch = re.search(r'_(\d+)xb(\d+)', model['Name'])
    if gpus_batch:  # {gpus}xb{batch} in the name: the global batch
        gpus, batch = map(int, gpus_batch.groups())
        assert batch == per_gpu
        assert model['Metadata']['Batch Size'] == gpus * batch
    else:
        assert model['Metadata']['Batch Size'] % per_gpu == 0


def test_every_pretraining_config_is_listed():
    listed = [m['Config'] for _, m in MODELS]
    assert len(listed) == len(set(listed))
    configs = sorted(
        osp.relpath(p, ROOT)
        for p in glob.glob(osp.join(CONFIGS, '**', '*.py'), recursive=True)
        if osp.relpath(p, CONFIGS).split(osp.sep)[0] not in NOT_ALGORITHMS)
    assert sorted(listed) == configs


READMES = ['README.md'] + sorted(
    osp.relpath(p, ROOT)
    for p in glob.glob(osp.join(CONFIGS, '*', 'README.md')))


@pytest.mark.parametrize('readme', READMES)
def test_readme_links_resolve(readme):
    with open(osp.join(ROOT, readme)) as f:
        text = f.read()
    targets = re.findall(r'\]\(([^)#\s]+)(?:#[^)]*)?\)', text)
    local = [t for t in targets if '://' not in t]
    assert local
    for target in local:
        assert osp.exists(osp.join(ROOT, osp.dirname(readme), target)), \
            f'{readme} links to a missing {target}'
