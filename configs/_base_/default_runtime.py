# Shared by every config of this repo: register mambaout_dense (fail loudly if it is missing)
# and keep checkpoints loadable with torch.load(weights_only=True).
custom_imports = dict(imports=['mambaout_dense'], allow_failed_imports=False)
custom_hooks = [dict(type='mambaout_dense.PlainCheckpointHook')]
