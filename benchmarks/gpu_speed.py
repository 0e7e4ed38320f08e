"""Speed sections of the GPU suite: the machine, the selective-scan backends against the memory
floor, and backbone training throughput.

- ``environment``: device, versions, the scan registry (every backend with the reason it cannot
  run, if any), copy bandwidth and GEMM rates (:mod:`mambaout_dense.analysis.measure`).
- ``scan_speed``: every registered backend that runs on the device except the ``reference`` loop
  (the registry decides, see :func:`scan_speed_plan`), forward and forward+backward, against the
  HBM floor ``4 * batch * (3 dim L + 2 groups N L)`` bytes / copy bandwidth (forward; ``8 dim L +
  6 groups N L`` for forward+backward). The selective scan is the one of "Mamba: Linear-Time
  Sequence Modeling with Selective State Spaces" (Gu & Dao, arXiv:2312.00752).
- ``backbones``: forward+backward images/s in bf16 autocast and fp32 of MambaOut-T ("MambaOut:
  Do We Really Need Mamba for Vision?", Yu & Wang, arXiv:2405.07992), ours and timm's
  ``mambaout_tiny`` with the same weights (the pair of ``benchmarks/backbone_speed.py``, timed
  with its forward functions), VMamba-T ("VMamba: Visual State Space Model", Liu et al.,
  arXiv:2401.10166; ours, Triton scan) and Swin-T ("Swin Transformer", Liu et al.,
  arXiv:2103.14030; timm, no mmcv op).
"""
from contextlib import nullcontext
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from gpu_correctness import to_jsonable
from gpu_plumbing import SkipRow, Suite

# Scan speed shapes: (name, batch, dim, L, N, groups). VMamba-T stage 1: 4 directions x 96
# channels, d_state 1, L = (H/4) * (W/4); Vanilla VMamba-T (v0): 4 x 192 channels, d_state 16.
ScanShape = Tuple[str, int, int, int, int, int]
GPU_SCAN_SPEED: List[ScanShape] = [
    ('VMamba-T stage 1, 512x512', 1, 384, 128 * 128, 1, 4),
    ('VMamba-T stage 1, 512x512, batch 8', 8, 384, 128 * 128, 1, 4),
    ('VMamba-T stage 1, 800x1344', 1, 384, 200 * 336, 1, 4),
    ('Vanilla VMamba-T stage 1 (N 16), 512x512', 1, 768, 128 * 128, 16, 4),
]
SMOKE_SCAN_SPEED: List[ScanShape] = [('tiny, N 1, 2 chunks', 1, 4, 130, 1, 2)]

# Backbones: (key, label). Inputs: (batch, H, W). dtypes: bf16 autocast, fp32.
BACKBONES: List[Tuple[str, str]] = [
    ('mambaout_ours', 'MambaOut-T (ours)'),
    ('mambaout_timm', 'MambaOut-T (timm)'),
    ('swin_timm', 'Swin-T (timm)'),
    ('vmamba_ours', 'VMamba-T (ours, Triton scan)'),
]
GPU_INPUTS: List[Tuple[int, int, int]] = [(8, 512, 512), (2, 800, 1280)]
SMOKE_INPUTS: List[Tuple[int, int, int]] = [(2, 32, 32)]
DTYPES: List[str] = ['bf16', 'fp32']
DTYPE_LABELS = {'bf16': 'bf16 autocast', 'fp32': 'fp32'}
REFERENCE_BACKBONE = 'swin_timm'


# ------------------------------------------------------------------------------------------
# environment
# ------------------------------------------------------------------------------------------


def versions() -> Dict[str, str]:
    """Versions of the packages the suite uses (those that import)."""
    import platform
    import sys
    from importlib.metadata import PackageNotFoundError, version
    out = {'python': platform.python_version()}
    for name in ('torch', 'triton', 'timm', 'mmengine', 'numpy'):
        try:
            out[name] = version(name)
        except PackageNotFoundError:  # importable without metadata (a path on PYTHONPATH)
            out[name] = str(getattr(sys.modules.get(name), '__version__', 'not installed'))
    return out


def scan_registry(device: str) -> Dict[str, str]:
    """Every registered scan backend: 'available', or why it cannot run on ``device``."""
    import torch

    from mambaout_dense.ops.scan import registered_backends, unavailable_reason
    out = {}
    for name, backend in registered_backends().items():
        reason = unavailable_reason(name)
        if reason is None and not backend.supports(torch.device(device)):
            reason = f'does not run on {device}'
        out[name] = reason or 'available'
    return out


def section_environment(device: str, smoke: bool) -> Dict[str, Any]:
    """Device, versions, the scan registry, copy bandwidth and GEMM rates."""
    import torch

    from mambaout_dense.analysis.measure import copy_bandwidth, environment, gemm_flops
    entry: Dict[str, Any] = {'environment': environment(device), 'versions': versions(),
                             'scan_backends': scan_registry(device)}
    cuda = device.startswith('cuda')
    if cuda:
        props = torch.cuda.get_device_properties(device)
        entry.update(gpu=props.name, capability=f'{props.major}.{props.minor}',
                     gpu_memory_gib=round(props.total_memory / 2**30, 1),
                     multiprocessors=props.multi_processor_count,
                     cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                     cudnn_benchmark=torch.backends.cudnn.benchmark,
                     matmul_tf32=torch.backends.cuda.matmul.allow_tf32,
                     cudnn_tf32=torch.backends.cudnn.allow_tf32)
    numel, n = (1 << 20, 256) if smoke else (1 << 28, 8192)
    entry['copy_gb_s'] = copy_bandwidth(device, numel=numel) / 1e9
    entry['gemm_fp32_tmac_s'] = gemm_flops(device, n=n) / 1e12
    if cuda:
        entry['gemm_bf16_tmac_s'] = gemm_flops(device, n=n, dtype=torch.bfloat16) / 1e12
        torch.cuda.empty_cache()  # hand the buffers back before the parts' child processes
    entry['rate_units'] = 'copy: bytes read + written per s; GEMM: multiply-adds per s'
    return entry


# ------------------------------------------------------------------------------------------
# scan_speed
# ------------------------------------------------------------------------------------------


def speed_backends(device: str) -> List[str]:
    """The backends timed on ``device``: every registered one that runs on its type except the
    ``reference`` loop; the available ones first, best first, then the others (their rows say
    why they were not timed)."""
    import torch

    from mambaout_dense.ops.scan import available_backends, registered_backends
    available = [n for n in available_backends(device) if n != 'reference']
    others = sorted(n for n, b in registered_backends().items()
                    if n not in available and n != 'reference'
                    and b.supports(torch.device(device)))
    return available + others


def scan_speed_plan(device: str, smoke: bool) -> List[Dict[str, Any]]:
    """The scan_speed rows: one per (shape, backend)."""
    return [{'key': f'{name} | {backend}', 'case': name, 'backend': backend,
             'shape': dict(batch=batch, dim=dim, L=length, N=n_state, groups=groups)}
            for name, batch, dim, length, n_state, groups in (SMOKE_SCAN_SPEED if smoke
                                                             else GPU_SCAN_SPEED)
            for backend in speed_backends(device)]


def floor_bytes(batch: int, dim: int, length: int, n_state: int, groups: int,
                backward: bool = False) -> int:
    """Bytes an fp32 scan must move at least (docs/reference.md section 4).

    Forward: read ``u``, ``delta``, write ``out`` (3 dim L) and read ``B``, ``C``
    (2 groups N L). Forward+backward adds reading ``u``, ``delta``, ``dout`` and writing ``du``,
    ``ddelta`` (5 dim L), reading ``B``, ``C`` and writing ``dB``, ``dC`` (4 groups N L).
    ``A``, ``D``, the bias and the kernels' chunk states are negligible and not counted.
    """
    per_batch = 3 * dim * length + 2 * groups * n_state * length
    if backward:
        per_batch += 5 * dim * length + 4 * groups * n_state * length
    return 4 * batch * per_batch


def measure_scan(row: Dict[str, Any], device: str, bandwidth: float, repeat: int,
                 warmup: int) -> Dict[str, Any]:
    """Forward and forward+backward time of one backend at one shape, against the floor."""
    import torch

    from mambaout_dense.analysis.measure import median_seconds, peak_memory_mb
    from mambaout_dense.ops import selective_scan
    from mambaout_dense.ops.scan import unavailable_reason
    backend = row['backend']
    reason = unavailable_reason(backend)
    if reason is not None:
        raise SkipRow(reason)
    s = row['shape']
    batch, dim, length, n_state, groups = s['batch'], s['dim'], s['L'], s['N'], s['groups']

    def randn(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return torch.randn(*shape, device=device) * scale  # made on the device

    # what VMamba passes: D, delta_bias and softplus, no z
    x = dict(u=randn(batch, dim, length), delta=randn(batch, dim, length, scale=0.5),
             A=-torch.rand(dim, n_state, device=device) * 3,
             B=randn(batch, groups, n_state, length), C=randn(batch, groups, n_state, length),
             D=randn(dim), delta_bias=randn(dim, scale=0.3))
    leaves = {k: v.requires_grad_() for k, v in x.items()}
    dout = randn(batch, dim, length)

    def forward() -> None:
        with torch.no_grad():
            selective_scan(**x, delta_softplus=True, backend=backend)

    def forward_backward() -> None:
        out = selective_scan(**leaves, delta_softplus=True, backend=backend)
        torch.autograd.grad(out, list(leaves.values()), dout)

    fwd = median_seconds(forward, device, warmup=warmup, repeat=repeat)
    fwd_bwd = median_seconds(forward_backward, device, warmup=warmup, repeat=repeat)
    shape = (batch, dim, length, n_state, groups)
    floor_fwd = floor_bytes(*shape) / bandwidth
    floor_fwd_bwd = floor_bytes(*shape, backward=True) / bandwidth
    return {'fwd_ms': fwd * 1e3, 'fwd_bwd_ms': fwd_bwd * 1e3, 'floor_fwd_ms': floor_fwd * 1e3,
            'floor_fwd_bwd_ms': floor_fwd_bwd * 1e3, 'x_floor_fwd': fwd / floor_fwd,
            'x_floor_fwd_bwd': fwd_bwd / floor_fwd_bwd,
            'floor_fwd_mb': floor_bytes(*shape) / 1e6,
            'peak_mib_fwd_bwd': to_jsonable(peak_memory_mb(forward_backward, device))}


def scan_ratios(rows: List[Dict[str, Any]], base: str = 'triton') -> None:
    """Each measured row's time over the ``base`` backend's at the same shape (in place)."""
    for row in rows:
        ref = next((r for r in rows if r['case'] == row['case'] and r['backend'] == base
                    and r['status'] == 'ok'), None)
        if row['status'] == 'ok' and ref is not None:
            row[f'fwd_vs_{base}'] = row['fwd_ms'] / ref['fwd_ms']
            row[f'fwd_bwd_vs_{base}'] = row['fwd_bwd_ms'] / ref['fwd_bwd_ms']


def section_scan_speed(suite: Suite, device: str, plan: List[Dict[str, Any]], smoke: bool,
                       bandwidth: Optional[float], repeat: int,
                       triton_ok: bool = True) -> Dict[str, Any]:
    """Every backend of ``plan`` timed against the HBM floor (rows of a backend that cannot run
    say why; Triton's are skipped when its preflight failed)."""
    from mambaout_dense.analysis.measure import copy_bandwidth
    if not bandwidth:
        bandwidth = copy_bandwidth(device, numel=1 << 20 if smoke else 1 << 28)
    warmup = 0 if smoke else 2  # the interpreter compiles nothing

    def measure(row: Dict[str, Any]) -> Dict[str, Any]:
        if row['backend'] == 'triton' and not triton_ok:
            raise SkipRow('the Triton preflight failed')
        return measure_scan(row, device, bandwidth, repeat, warmup)

    for row in plan:
        suite.row(row, lambda row=row: measure(row), need_s=5)
    return {'copy_gb_s': bandwidth / 1e9}


# ------------------------------------------------------------------------------------------
# backbones
# ------------------------------------------------------------------------------------------


def backbone_plan(smoke: bool, scan_backend: str = 'triton') -> List[Dict[str, Any]]:
    """The backbone rows in the order measured.

    The VMamba rows come last: they run our Triton kernels, and a kernel fault that broke the
    CUDA context marks the rows after it.

    Args:
        smoke (bool): The CPU rehearsal's inputs.
        scan_backend (str): VMamba's scan: 'triton' on a GPU whose preflight passed, else
            'torch' (the smoke run too: the Triton interpreter takes about a minute per training
            step of even the ``test`` arch). Defaults to 'triton'.
    """
    inputs = SMOKE_INPUTS if smoke else GPU_INPUTS
    order = [(key, inp, dtype) for inp in inputs for dtype in DTYPES for key, _ in BACKBONES
             if key != 'vmamba_ours']
    order += [('vmamba_ours', inp, dtype) for inp in inputs for dtype in DTYPES]
    rows = []
    for key, inp, dtype in order:
        row = {'key': backbone_row_key(key, inp, dtype), 'model': dict(BACKBONES)[key],
               'backbone': key, 'input': f'{inp[0]} x {inp[1]}x{inp[2]}', 'batch': inp[0],
               'hw': [inp[1], inp[2]], 'dtype': dtype}
        if key == 'vmamba_ours':
            row['scan_backend'] = scan_backend
            if scan_backend != 'triton':
                row['model'] = f'VMamba-T (ours, {scan_backend} scan)'
        rows.append(row)
    return rows


def backbone_row_key(key: str, inp: Sequence[int], dtype: str) -> str:
    """Row key of one backbone measurement."""
    return f'{key} | {inp[0]}x{inp[1]}x{inp[2]} | {dtype}'


def build_backbones(key: str, hw: Sequence[int], smoke: bool,
                    scan_backend: str) -> Dict[str, Tuple[Any, Callable[[Any, Any], Any]]]:
    """The model(s) of ``key`` and their stage-map functions (four NCHW maps, no output norms).

    MambaOut: both of ``backbone_speed.build_pair`` (timm's ``mambaout_tiny`` and ours with its
    weights), returned under both keys. With ``smoke`` VMamba and Swin are ``test``-sized.
    """
    import timm
    from backbone_speed import build_pair, ours_forward, timm_forward

    from mambaout_dense.models import VMamba
    if key in ('mambaout_ours', 'mambaout_timm'):
        ours, reference = build_pair('cpu')  # about 26 M parameters each, moved by the caller
        return {'mambaout_ours': (ours, ours_forward),
                'mambaout_timm': (reference, timm_forward)}
    if key == 'vmamba_ours':
        return {key: (VMamba('test' if smoke else 'tiny', scan_backend=scan_backend),
                      ours_forward)}
    if key == 'swin_timm':
        kw = dict(embed_dim=16, depths=(1, 1, 2, 1), num_heads=(1, 2, 2, 4)) if smoke else {}
        model = timm.create_model('swin_tiny_patch4_window7_224', pretrained=False,
                                  num_classes=0, img_size=tuple(hw), **kw)
        return {key: (model, timm_forward)}
    raise ValueError(f'unknown backbone {key!r}; valid: {[k for k, _ in BACKBONES]}')


def backbone_ratios(rows: List[Dict[str, Any]]) -> None:
    """Speed over Swin-T (every model) and over timm's MambaOut-T (ours), in place."""
    for row in rows:
        for ref_key, field in ((REFERENCE_BACKBONE, 'speed_vs_swin'),
                               ('mambaout_timm', 'speed_vs_timm_mambaout')):
            if field == 'speed_vs_timm_mambaout' and row['backbone'] != 'mambaout_ours':
                continue
            ref = next((r for r in rows if r['backbone'] == ref_key and r['status'] == 'ok'
                        and r['input'] == row['input'] and r['dtype'] == row['dtype']), None)
            if row['status'] == 'ok' and ref is not None:
                row[field] = row['images_per_s'] / ref['images_per_s']


def section_backbones(suite: Suite, device: str, plan: List[Dict[str, Any]], smoke: bool,
                      repeat: int) -> Dict[str, Any]:
    """Forward+backward images/s in bf16 autocast and fp32, one row per entry of
    :func:`backbone_plan` (VMamba's rows name their scan backend)."""
    import torch

    from mambaout_dense.analysis.measure import median_seconds, peak_memory_mb
    warmup = 0 if smoke else 2
    built: Dict[str, Any] = {}
    current: List[Any] = [None]

    def measure(row: Dict[str, Any]) -> Dict[str, Any]:
        key, batch, hw = row['backbone'], row['batch'], row['hw']
        if current[0] != row['input']:
            built.clear()  # keep only the models of the current input alive
            current[0] = row['input']
        if key not in built:
            torch.manual_seed(0)
            models = build_backbones(key, hw, smoke, row.get('scan_backend', 'torch'))
            for name, (model, maps) in models.items():
                built[name] = (model.to(device).train(), maps)
        model, maps = built[key]
        x = torch.randn(batch, 3, *hw, device=device)
        autocast = (torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
                    if row['dtype'] == 'bf16' else nullcontext())
        shapes: List[Tuple[int, ...]] = []

        def step() -> None:
            model.zero_grad(set_to_none=True)
            with autocast:
                outs = maps(model, x)
                loss = sum(o.float().mean() for o in outs)
            loss.backward()
            shapes[:] = [tuple(o.shape) for o in outs]

        seconds = median_seconds(step, device, warmup=warmup, repeat=repeat)
        return {'params_m': sum(p.numel() for p in model.parameters()) / 1e6,
                'ms_per_iter': seconds * 1e3, 'images_per_s': batch / seconds,
                'peak_mib': to_jsonable(peak_memory_mb(step, device)),
                'output_shapes': [list(s) for s in shapes]}

    for row in plan:
        suite.row(row, lambda row=row: measure(row), need_s=0 if smoke else 10)
    built.clear()
    return {'reference': REFERENCE_BACKBONE,
            'forward': 'forward_stages (ours) / forward_intermediates (timm): four NCHW stage '
            'maps without output norms, as benchmarks/backbone_speed.py times them',
            'loss': 'sum of the means of the 4 stage maps, in fp32'}
