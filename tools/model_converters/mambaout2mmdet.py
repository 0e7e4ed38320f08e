#!/usr/bin/env python
"""Convert an official or timm MambaOut checkpoint into a backbone checkpoint for this project.

    python tools/model_converters/mambaout2mmdet.py mambaout_tiny.pth mambaout_tiny_backbone.pth

The output holds ``{'state_dict': ...}`` with our backbone's keys (classifier and final norm
dropped) and loads with ``init_cfg=dict(type='Pretrained', checkpoint=DST)``. The source is read
with ``weights_only=True``; the layout is detected automatically.
"""
import argparse
import io
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='official (mambaout_*.pth) or timm checkpoint')
    parser.add_argument('dst', help='output backbone checkpoint')
    args = parser.parse_args(argv)

    from mambaout_dense.cli import run_main
    return run_main(convert, args)


def convert(args: argparse.Namespace) -> None:
    import torch

    from mambaout_dense.checkpoint import extract_state_dict, safe_load
    from mambaout_dense.checkpoint.mambaout import convert_mambaout, detect_mambaout_layout
    from mambaout_dense.engine.atomic_io import atomic_write_bytes
    raw = extract_state_dict(safe_load(args.src), args.src)
    layout = detect_mambaout_layout(raw)
    state, ignored = convert_mambaout(raw)
    buffer = io.BytesIO()
    torch.save({'state_dict': state}, buffer)
    atomic_write_bytes(args.dst, buffer.getvalue())  # never half a file under the final name
    print(f'{args.src} ({layout} layout): wrote {len(state)} tensors to {args.dst}; '
          f'dropped {len(ignored)} ({", ".join(sorted({k.split(".")[0] for k in ignored}))})')


if __name__ == '__main__':
    sys.exit(main())
