#!/bin/sh
# Stand-in for the NGC image's tritonserver: the nvidia-pytriton wheel's real tritonserver binary
# with the python backend and the python-based onnxruntime backend (CPU only).
SITE=/usr/local/lib/python3.11/dist-packages
export LD_LIBRARY_PATH="$SITE/nvidia_pytriton.libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
case " $* " in
  *" --backend-directory"*) exec "$SITE/pytriton/tritonserver/bin/tritonserver" "$@" ;;
  *) exec "$SITE/pytriton/tritonserver/bin/tritonserver" --backend-directory=/opt/tritonserver/backends "$@" ;;
esac
