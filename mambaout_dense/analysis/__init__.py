"""Analysis: FLOP counting, the long-sequence probe, scaling, effective receptive field."""
