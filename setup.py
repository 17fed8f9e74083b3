from setuptools import find_packages, setup


def parse_requirements(fname):
    with open(fname) as f:
        return [
            line.split('#')[0].strip() for line in f
            if line.split('#')[0].strip()
        ]


setup(
    name='hirl_mm',
    version='0.2.0',
    description='Hierarchical self-supervised representation learning '
    '(HIRL, HCSC, SS-PRL) as an OpenMMLab plugin',
    packages=find_packages(include=['hirl_mm', 'hirl_mm.*']),
    python_requires='>=3.9',
    install_requires=parse_requirements('requirements/runtime.txt'),
    extras_require=dict(
        mim=parse_requirements('requirements/mminstall.txt'),
        tests=parse_requirements('requirements/tests.txt'),
        optional=parse_requirements('requirements/optional.txt')),
    zip_safe=False)
