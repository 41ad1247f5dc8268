"""The contract both runtimes share and nothing else: the wire protocol (``wire``, its
safetensors codec ``safetensors_io``, the typed ``messages`` and ``errors`` of the HTTP API),
the names of the files a run leaves (``file_names``) and the command-line/environment flag
helpers (``env_args``). It imports neither ``server_component`` nor ``client_component``."""
