"""Packaging for mambaout_dense.

The pinned versions are those ``tools/install.sh`` installs. mmcv 2.1.0 with compiled ops has no
wheel on PyPI for current torch, so it is built by ``tools/install.sh``; it is listed here so that
pip's resolver checks it is present.
"""
import os.path as osp

from setuptools import find_packages, setup


def read_version() -> str:
    scope: dict = {}
    with open(osp.join(osp.dirname(__file__), 'mambaout_dense', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


setup(
    name='mambaout_dense',
    version=read_version(),
    description='MambaOut and VMamba-style backbones for Mask R-CNN and UperNet on OpenMMLab',
    long_description=open(osp.join(osp.dirname(__file__), 'README.md')).read()
    if osp.exists(osp.join(osp.dirname(__file__), 'README.md')) else '',
    long_description_content_type='text/markdown',
    packages=find_packages(include=['mambaout_dense', 'mambaout_dense.*']),
    package_data={'mambaout_dense': ['ops/csrc/*.cpp']},
    python_requires='>=3.9',
    install_requires=[
        'torch==2.14.1',
        'torchvision==0.29.1',
        'mmengine==0.10.7',
        'mmcv==2.1.0',
        'mmdet==3.3.0',
        'mmsegmentation==1.2.2',
        'timm==1.0.31',
        'pycocotools==2.0.11',
        'ftfy',
        'regex',
        'numpy',
        'matplotlib',
        'scipy',
        'tqdm',
    ],
    extras_require={
        'tests': ['pytest', 'ruff'],
        'mamba': ['mamba_ssm'],
    },
)
