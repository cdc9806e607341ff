"""Install cmlang: the language and compiler (cmlang/), with codegen/ and runtime/
installed as cmlang.codegen and cmlang.runtime."""
from setuptools import setup, find_packages


def subpackages(folder, prefix):
    return [prefix] + [f"{prefix}.{p}" for p in find_packages(folder)]


# codegen/, runtime/ and examples/ live beside cmlang/ in the repository and install
# inside it, so site-packages gains one name only: cmlang.
MOVED = (("cmlang.codegen", "codegen"), ("cmlang.runtime", "runtime"), ("cmlang.examples", "examples"))
packages = subpackages("cmlang", "cmlang")
for top, folder in MOVED:
    packages += subpackages(folder, top)
package_dir = {"cmlang": "cmlang"}
for pkg in packages:
    for top, folder in MOVED:
        if pkg == top or pkg.startswith(top + "."):
            package_dir[pkg] = folder + pkg[len(top):].replace(".", "/")

setup(
    name="cmlang",
    version="0.1.0",
    description="Explicit-SIMD GPU kernels in Python, in the spirit of Intel's C-for-Metal",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=packages,
    package_dir=package_dir,
    package_data={"cmlang.ir": ["*.lark"]},
    install_requires=[
        "numpy>=1.24",
        "llvmlite>=0.50",        # LLVM 22 with the SPIR-V backend
        "lark>=1.1",
        "pyopencl>=2024.1",
        "dpctl>=0.20",
        "intel-opencl-rt",       # the embedded default device (Intel OpenCL CPU runtime)
        "platformdirs>=3",
        "tqdm>=4",
    ],
    extras_require={
        "test": ["pytest>=7", "pytest-xdist>=3", "hypothesis>=6", "dpcpp-llvm-spirv", "ml_dtypes>=0.3"],   # CI validates spirv-vc modules
        "plot": ["matplotlib>=3.5"],
        "vc": ["dpcpp-llvm-spirv"],     # target "spirv-vc": the Khronos SPIR-V translator (llvm-spirv)
    },
    entry_points={"console_scripts": ["cmlang = cmlang.cli:main"]},
)
