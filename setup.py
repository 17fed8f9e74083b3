from setuptools import find_packages, setup


def parse_requirements(fname):
    with open(fname) as f:
        return [
            line.split('#')[0].strip() for line in f
            if line.split('#')[0].strip()
        ]


def get_version():
    with open('hirl_mm/version.py') as f:
        exec(compile(f.read(), 'hirl_mm/version.py', 'exec'))
    return locals()['__version__']


# Ranges, not pins: `pip install -e .` into an environment that already has
# torch, mmengine, mmcv and mmpretrain keeps them (tools/setup_env.sh installs
# the tested versions of requirements/constraints.txt). mmcv is built from
# source when missing: docs/installation.md says how.
transfer = parse_requirements('requirements/optional.txt')
tests = parse_requirements('requirements/tests.txt')
setup(
    name='hirl_mm',
    version=get_version(),
    description='Hierarchical self-supervised representation learning '
    '(HIRL, HCSC, SS-PRL) as an OpenMMLab plugin',
    license='Apache License 2.0',
    packages=find_packages(include=['hirl_mm', 'hirl_mm.*']),
    python_requires='>=3.9',
    install_requires=parse_requirements('requirements/runtime.txt') +
    parse_requirements('requirements/mminstall.txt'),
    extras_require={
        # faiss-cpu and faiss-gpu-* install the same `faiss` module: one.
        'faiss-cpu': ['faiss-cpu>=1.7.4'],
        'faiss-gpu': ['faiss-gpu-cu12>=1.8.0'],
        'transfer': transfer,
        'tests': tests,
        'all': ['faiss-cpu>=1.7.4'] + transfer + tests,
        'mim': parse_requirements('requirements/mminstall.txt'),
    },
    zip_safe=False)
