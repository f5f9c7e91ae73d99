# The Q4_0 twin of ../shared/peers/mkqwen_gguf.py's file: the very same random weights (same
# generator, same order, rounded to f16 first, as llama-quantize would read them), every
# matrix quantized to Q4_0 blocks by gguf-py's reference quantizer; vectors stay f32.
# Usage: python3 mkqwen_q4_0.py MKQWEN_GGUF_PY LLAMA_CPP_DIR OUT.gguf [LAYERS]
import runpy, sys
import numpy as np

mkqwen, llama_dir = sys.argv[1], sys.argv[2]
sys.path.insert(0, llama_dir + '/gguf-py')
import gguf  # noqa: E402  (the module mkqwen_gguf.py imports too, patched below)

Q4_0 = gguf.GGMLQuantizationType.Q4_0
add_tensor = gguf.GGUFWriter.add_tensor
add_file_type = gguf.GGUFWriter.add_file_type


def add_q4_0(self, name, a, *args, **kw):
    if a.ndim == 2:
        q = gguf.quants.quantize(a.astype(np.float32), Q4_0)
        return add_tensor(self, name, q, raw_dtype=Q4_0)
    return add_tensor(self, name, a, *args, **kw)


gguf.GGUFWriter.add_tensor = add_q4_0
gguf.GGUFWriter.add_file_type = lambda self, _: add_file_type(self, gguf.LlamaFileType.MOSTLY_Q4_0)
sys.argv = [mkqwen] + sys.argv[2:]
runpy.run_path(mkqwen, run_name='__main__')
