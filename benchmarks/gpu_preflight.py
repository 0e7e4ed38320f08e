"""Preflight of the GPU suite: what must hold before anything is timed, checked within seconds.

In order (``benchmarks/gpu_suite.py`` runs them before the timed parts):

1. **wheels**: every wheel that ``benchmarks/gpu_wheelhouse.sh`` pins is installed (on the lent
   machine, from the carried wheelhouse, at the pinned version);
2. **imports**: torch, timm, mmengine and the package's ``ops``, ``models`` and ``analysis``
   modules, and the backbone benchmark whose model pair the suite reuses; the optional modules
   that ``mmengine.optim`` tries (``transformers``, ...) are blocked first, so that a broken one
   cannot fail ``import mambaout_dense.models``;
3. **triton**: one tiny forward+backward of the Triton selective scan ("Mamba: Linear-Time
   Sequence Modeling with Selective State Spaces", Gu & Dao, arXiv:2312.00752) per risk of its
   first compile, compared with the float64 reference (:data:`gpu_correctness.PREFLIGHT_CASES`),
   in a child process with its own cap.

The verdict is one line: ``pass`` (everything can run), ``degraded`` (the Triton kernels failed:
the scan part is skipped and VMamba runs on the ``torch`` scan), or ``fail`` (the imports failed:
nothing can run). A wheel problem is a warning in the line (the imports say whether it matters).
The standard library only at module level.
"""
import importlib
import os
import os.path as osp
import re
import traceback
from typing import Any, Dict, List, Optional, Tuple

from gpu_plumbing import REPO_ROOT, Suite, block_optional_imports

WHEELHOUSE_SCRIPT = osp.join(REPO_ROOT, 'benchmarks', 'gpu_wheelhouse.sh')
#: Where ``gpu_wheelhouse.sh`` puts the wheels (relative to the repository root).
WHEELHOUSE = 'work_dirs/gpu_wheelhouse'
#: Modules the suite cannot run without, imported in this order.
REQUIRED_IMPORTS = ('torch', 'timm', 'mmengine', 'mambaout_dense.ops', 'mambaout_dense.models',
                    'mambaout_dense.analysis.measure', 'mambaout_dense.analysis.tables',
                    'backbone_speed')
#: The Python distributions of the lent machine's image, as device/KINDS.md lists them
#: (read 2026-11-17). What the suite imports beyond these (and what they require) travels as
#: wheels; ``tests/benchmarks/test_gpu_suite.py`` checks the pinned list against that.
DEVICE_PACKAGES = frozenset("""
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch
build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage
cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn
einops equinox etils execnet filelock flatbuffers flax fonttools formulaic frozenlist fsspec
gpytorch grpcio h11 h5py hf-xet httpcore httpx humanize hypothesis idna imageio iniconfig
interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver
lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown
markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict
multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro
nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13
nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13
nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir
onnxruntime onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx optimistix
orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy portalocker
prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing
pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout
pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors
scikit-build-core scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers
setuptools shellingham simplejson six sortedcontainers statsmodels sympy tabulate tensorboard
tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz torch
torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope
triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt
xarray xxhash yarl zipp
""".split())


def normalize(name: str) -> str:
    """A distribution name in its canonical form (PEP 503)."""
    return re.sub(r'[-_.]+', '-', name).lower()


def pinned_wheels(script: str = WHEELHOUSE_SCRIPT) -> List[Tuple[str, str]]:
    """``(name, version)`` of every wheel in the ``WHEELS=( ... )`` list of the wheelhouse
    script (what ``bash benchmarks/gpu_wheelhouse.sh --list`` prints)."""
    with open(script) as f:
        text = f.read()
    block = re.search(r'^WHEELS=\((.*?)^\)', text, re.S | re.M)
    if block is None:
        raise ValueError(f'no WHEELS=( ... ) list in {script}')
    return re.findall(r'^\s*([A-Za-z0-9_.-]+)==([^\s#]+)', block.group(1), re.M)


def check_wheels(wheelhouse: Optional[str]) -> Dict[str, Any]:
    """Every pinned wheel installed; with ``wheelhouse`` (the lent machine) also carried there
    and installed at the pinned version.

    Raises:
        RuntimeError: Naming what is missing.
    """
    from importlib.metadata import PackageNotFoundError, version
    installed, problems = {}, []
    files: List[str] = []
    if wheelhouse is not None:
        if not osp.isdir(wheelhouse):
            raise RuntimeError(f'no wheelhouse at {wheelhouse}: run bash '
                               'benchmarks/gpu_wheelhouse.sh before the call')
        files = sorted(f for f in os.listdir(wheelhouse) if f.endswith('.whl'))
    # a wheel's file name starts with {distribution}-{version}- (PEP 427)
    carried = {(normalize(f.split('-')[0]), f.split('-')[1]) for f in files if '-' in f}
    for name, pinned in pinned_wheels():
        try:
            installed[name] = version(name)
        except PackageNotFoundError:
            problems.append(f'{name} not installed')
            continue
        if wheelhouse is not None:
            if (normalize(name), pinned) not in carried:
                problems.append(f'{name}=={pinned} not in {wheelhouse}')
            elif installed[name] != pinned:
                problems.append(f'{name} {installed[name]} installed, {pinned} carried')
    if problems:
        raise RuntimeError('; '.join(problems))
    return {'installed': installed, 'wheelhouse': wheelhouse, 'wheel_files': files}


def check_imports() -> Dict[str, Any]:
    """Import :data:`REQUIRED_IMPORTS` in order (optional imports blocked first).

    Raises:
        RuntimeError: At the first module that does not import, with its error.
    """
    blocked = block_optional_imports()
    done = []
    for name in REQUIRED_IMPORTS:
        try:
            importlib.import_module(name)
        except Exception as e:  # noqa: BLE001 - any failure is the answer
            raise RuntimeError(f'import {name} failed ({type(e).__name__}: {e}); imported: '
                               f'{done}; {traceback.format_exc(limit=-3)[-1500:]}') from e
        done.append(name)
    try:
        import triton  # noqa: F401  (the kernels' compiler; its check is the Triton step)
        triton_version = getattr(triton, '__version__', '?')
    except Exception as e:  # noqa: BLE001 - the Triton step reports it
        triton_version = f'does not import ({type(e).__name__}: {e})'
    return {'imported': done, 'optional_blocked': blocked, 'triton': triton_version}


def preflight_plan() -> List[Dict[str, Any]]:
    """The rows of the ``preflight`` section (the Triton step has a section of its own)."""
    return [{'key': 'wheels', 'check': 'the pinned wheels are installed'},
            {'key': 'imports', 'check': 'torch, timm, mmengine, mambaout_dense.models/ops/'
             'analysis, backbone_speed'}]


def section_preflight(suite: Suite, wheelhouse: Optional[str]) -> Dict[str, Any]:
    """The wheels and imports rows (in this process: the timed parts need the same imports)."""
    wheels, imports = preflight_plan()
    suite.row(wheels, lambda: check_wheels(wheelhouse))
    suite.row(imports, check_imports)
    return {}


def verdict(result: Dict[str, Any]) -> Tuple[str, str]:
    """``(word, one line)`` of the preflight: 'pass', 'degraded' or 'fail'.

    Only the imports can fail it (without them nothing runs); a wheel problem is a warning
    (the imports say whether it matters).
    """
    from gpu_correctness import preflight_passed
    sections = result.get('sections', {})
    rows = {r['key']: r for r in sections.get('preflight', {}).get('rows', [])}
    problems = {k: f'{k}: {r.get("error") or r.get("reason")}' for k, r in rows.items()
                if r.get('status') != 'ok'}
    warning = f'; warning: {problems["wheels"]}' if 'wheels' in problems else ''
    if rows.get('imports', {}).get('status') != 'ok':
        return 'fail', 'fail: ' + (problems.get('imports', 'imports not checked')) + warning
    triton = sections.get('preflight_triton') or {}
    cases = triton.get('rows', [])
    if preflight_passed(triton):
        worst = max(r['max_error'] for r in cases)
        compile_s = sum(r.get('first_call_s', 0) for r in cases)
        return 'pass', (f'pass: imports ok; Triton forward+backward {len(cases)}/{len(cases)} '
                        f'cases within tolerance (worst relative error {worst:.1e}, first calls '
                        f'with compile {compile_s:.1f} s){warning}')
    why = triton.get('reason') or triton.get('error') or '; '.join(
        f'{r["key"]}: {r.get("error") or r.get("reason") or "max error " + str(r.get("max_error"))}'
        for r in cases if not (r.get('status') == 'ok' and r.get('passed')))
    return 'degraded', (f'degraded: imports ok, the Triton check did not pass ({why}); the '
                        f'scan part is skipped and VMamba runs on the torch scan{warning}')
