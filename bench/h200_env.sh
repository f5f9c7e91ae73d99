# Sourced by the bench/*h200*.sh scripts on the GPU machine: the Vulkan loader from the kit
# ($KIT/lib, made by bench/gpu_h200_prep.sh: the GPU image has none) and the NVIDIA
# driver's ICD from the image, or one written here for the driver's libGLX_nvidia.
export LD_LIBRARY_PATH=$KIT/lib:${LD_LIBRARY_PATH:-}
if [ -z "${VK_DRIVER_FILES:-}" ]; then
  for f in /usr/share/vulkan/icd.d/nvidia_icd*.json /etc/vulkan/icd.d/nvidia_icd*.json; do
    if [ -f "$f" ]; then export VK_DRIVER_FILES=$f; break; fi
  done
fi
if [ -z "${VK_DRIVER_FILES:-}" ]; then
  lib=$(ldconfig -p 2>/dev/null | awk '/libGLX_nvidia.so.0/ {print $NF; exit}')
  lib=${lib:-$(find / -name 'libGLX_nvidia.so.0' -not -path '/proc/*' 2>/dev/null | head -1)}
  printf '{"file_format_version":"1.0.0","ICD":{"library_path":"%s","api_version":"1.3.0"}}\n' \
    "$lib" >/tmp/nvidia_icd.json
  export VK_DRIVER_FILES=/tmp/nvidia_icd.json
fi
