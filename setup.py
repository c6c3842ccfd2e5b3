"""tinydl: a from-scratch deep learning engine on NumPy (CPU) and CuPy (GPU)."""
from setuptools import find_packages, setup

TRAIN = ["scikit-learn>=1.3", "opencv-python-headless>=4.8", "tqdm>=4.66", "matplotlib>=3.7"]
# mpi4py over the MPICH wheel, which brings mpiexec: data-parallel training (tinydl.distributed)
DIST = ["mpi4py>=4", "mpich"]

setup(
    name="tinydl",
    version="0.1.0",
    description="A readable deep learning engine on NumPy/CuPy with Numba kernels, PyTorch's API",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["tinydl", "tinydl.*", "models", "models.*"]),
    python_requires=">=3.10",
    install_requires=["numpy>=1.24", "numba>=0.59"],
    extras_require={
        "gpu": ["cupy-cuda12x>=13"],          # CUDA 12 drivers
        "gpu-cuda13": ["cupy-cuda13x>=13"],   # CUDA 13 drivers (the H100 tests ran on CuPy 14.2)
        "gpu-cudnn": ["nvidia-cudnn-cu12>=9"],   # with gpu or gpu-cuda13: cuDNN for td.backends.cudnn.enabled
        "train": TRAIN,
        "dist": DIST,
        # torch (CPU build) is the oracle the tests compare every op against; hypothesis fuzzes shapes;
        # pytest-xdist runs the suite in two processes (their Numba compilations overlap); OpenCV's
        # contrib build (a superset of the headless cv2, same version) has ximgproc's selective
        # search, the reference for tinydl.vision.ops.selective_search's recall test
        "dev": TRAIN + DIST + ["pytest>=7", "pytest-xdist>=3", "torch==2.13.0", "hypothesis>=6.100",
                               "opencv-contrib-python-headless>=4.8"],
    },
    entry_points={"console_scripts": ["tinydl=tinydl.cli:console_main"]},
)
