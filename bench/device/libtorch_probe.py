"""Whether TorchSharp's native bridge (libLibTorchSharp.so, built against libtorch 2.10) links against this machine's
PyTorch libraries (torch/lib): every symbol resolved (RTLD_NOW) or the first one missing. A first step toward running
AlignHub's CUDA workers on a machine whose only libtorch is PyTorch's. usage: python3 libtorch_probe.py LIB.so REPORT.json"""
import ctypes, json, os, sys
import torch
lib, out = sys.argv[1], sys.argv[2]
torch_lib = os.path.join(os.path.dirname(torch.__file__), "lib")
r = {"torch": torch.__version__, "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(), "torch_lib": torch_lib}
try:
    r["torch_lib_files"] = sorted(f for f in os.listdir(torch_lib) if f.endswith(".so") or ".so." in f)
    for name in ["libc10.so", "libtorch_cpu.so", "libc10_cuda.so", "libtorch_cuda.so", "libtorch.so"]:
        p = os.path.join(torch_lib, name)
        if os.path.exists(p):
            ctypes.CDLL(p, mode=ctypes.RTLD_GLOBAL)
    ctypes.CDLL(lib, mode=ctypes.RTLD_GLOBAL | os.RTLD_NOW)
    r["loaded"] = True
except OSError as e:
    r["loaded"] = False
    r["error"] = str(e)
json.dump(r, open(out, "w"), indent=2)
print(json.dumps({k: v for k, v in r.items() if k != "torch_lib_files"}, indent=2))
