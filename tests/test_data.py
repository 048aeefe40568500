"""Data readers on small files written here in the real formats; ranges and levels."""

import gzip
import os
import subprocess

import numpy as np
import pytest
import torch

from scoresde.data import (
    DATASETS,
    FASHION_MNIST_DEBIAN_ROOT,
    DataError,
    get_dataset,
    make_toy2d,
    read_cifar10_batch,
    read_idx,
    write_idx,
)
from scoresde.data.images import load_cifar10_dataset, load_idx_dataset, load_image_folder_dataset


def _idx_bytes(arr: np.ndarray) -> bytes:
    """IDX by hand (independent of write_idx): 0 0 0x08 ndim, big-endian dims, data."""
    head = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return head + arr.astype(np.uint8).tobytes()


@pytest.fixture
def mnist_dir(tmp_path):
    rng = np.random.default_rng(0)
    imgs = {
        s: rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        for s, n in (("train", 12), ("t10k", 5))
    }
    labs = {s: rng.integers(0, 10, len(imgs[s]), dtype=np.uint8) for s in imgs}
    for s in list(imgs):  # train files gzip, test files raw: both must be read
        img, lab = _idx_bytes(imgs[s]), _idx_bytes(labs[s])
        if s == "train":
            (tmp_path / f"{s}-images-idx3-ubyte.gz").write_bytes(gzip.compress(img))
            (tmp_path / f"{s}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(lab))
        else:
            (tmp_path / f"{s}-images-idx3-ubyte").write_bytes(img)
            (tmp_path / f"{s}-labels-idx1-ubyte").write_bytes(lab)
    return tmp_path, imgs, labs


def test_idx_reader_gz_and_raw_round_trip(mnist_dir):
    root, imgs, labs = mnist_dir
    a = read_idx(root / "train-images-idx3-ubyte.gz")
    assert a.shape == (12, 28, 28) and a.dtype == np.uint8 and np.array_equal(a, imgs["train"])
    assert np.array_equal(read_idx(root / "t10k-labels-idx1-ubyte"), labs["t10k"])
    write_idx(root / "w.gz", imgs["t10k"])
    assert np.array_equal(read_idx(root / "w.gz"), imgs["t10k"])


def test_idx_dataset_range_levels_labels(mnist_dir):
    root, imgs, labs = mnist_dir
    for rng_, lo in (((-1, 1), -1.0), ((0, 1), 0.0)):
        ds = load_idx_dataset(root, "train", name="mnist", data_range=rng_)
        x, y = ds[3]
        assert x.shape == (1, 28, 28) and int(y) == int(labs["train"][3])
        assert torch.allclose(
            x, torch.from_numpy(imgs["train"][3]).float()[None] / 255 * (1 - lo) + lo
        )
        assert ds.info["levels"] == 256 and ds.info["num_classes"] == 10
    assert len(load_idx_dataset(root, "test")) == 5


def test_idx_corrupt_and_missing_files_are_reported(mnist_dir, tmp_path_factory):
    root, imgs, _ = mnist_dir
    bad = root / "t10k-images-idx3-ubyte"
    bad.write_bytes(_idx_bytes(imgs["t10k"])[:-7])  # truncated
    with pytest.raises(DataError, match="corrupt IDX file .*t10k-images"):
        load_idx_dataset(root, "test")
    bad.write_bytes(b"\x12\x34" + _idx_bytes(imgs["t10k"])[2:])  # bad magic
    with pytest.raises(DataError, match="bad magic"):
        read_idx(bad)
    (root / "train-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(DataError, match="corrupt"):
        read_idx(root / "train-labels-idx1-ubyte.gz")
    empty = tmp_path_factory.mktemp("empty")
    with pytest.raises(DataError, match=r"missing train-images-idx3-ubyte.gz .*data.root="):
        get_dataset("mnist", "train", root=str(empty))
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        get_dataset("fashion_mnist", "train", root=str(empty))


def test_cifar10_binary_batches(tmp_path):
    rng = np.random.default_rng(1)
    batches = {}
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        n = 3
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        pix = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        np.concatenate([labels[:, None], pix], 1).tofile(tmp_path / name)
        batches[name] = (labels, pix)
    imgs, labels = read_cifar10_batch(tmp_path / "test_batch.bin")
    assert imgs.shape == (3, 3, 32, 32) and np.array_equal(labels, batches["test_batch.bin"][0])
    # record layout: 1024 R, then 1024 G, then 1024 B bytes, row-major 32x32
    assert imgs[1, 1, 2, 5] == batches["test_batch.bin"][1][1, 1024 + 2 * 32 + 5]
    ds = load_cifar10_dataset(tmp_path, "train", data_range=(0, 1))
    assert len(ds) == 15 and ds.info["shape"] == [3, 32, 32] and ds.info["levels"] == 256
    x, _ = ds[4]
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    (tmp_path / "data_batch_3.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(DataError, match="corrupt CIFAR-10 batch .*data_batch_3.bin"):
        load_cifar10_dataset(tmp_path, "train")
    os.remove(tmp_path / "data_batch_3.bin")
    with pytest.raises(DataError, match="missing data_batch_3.bin"):
        load_cifar10_dataset(tmp_path, "train")


def test_image_folder_png_classes_and_corrupt_file(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(2)
    for cls in ("cats", "dogs"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(
                tmp_path / cls / f"{i}.png"
            )
    ref = np.array(Image.open(tmp_path / "dogs" / "1.png"))
    ds = load_image_folder_dataset(tmp_path, "train", image_size=16, channels=3)
    assert len(ds) == 6 and ds.info["num_classes"] == 2 and ds.info["shape"] == [3, 16, 16]
    x, y = ds[4]  # sorted: cats/0..2, dogs/0..2
    assert int(y) == 1
    assert torch.allclose(x, torch.from_numpy(ref).permute(2, 0, 1).float() / 255 * 2 - 1)
    (tmp_path / "dogs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DataError, match="corrupt image file .*broken.png"):
        load_image_folder_dataset(tmp_path, "train", image_size=16)


def test_digits_levels_split_and_range():
    tr, te = get_dataset("digits", "train"), get_dataset("digits", "test")
    assert len(tr) + len(te) == 1797 and len(te) == 297
    assert (
        tr.info["levels"] == 17 and tr.info["shape"] == [1, 8, 8] and tr.info["num_classes"] == 10
    )
    x, _ = tr.get_batch(torch.arange(len(tr)))
    grid = (x + 1) / 2 * 16  # integer levels 0..16 back
    assert torch.allclose(grid, grid.round(), atol=1e-5) and x.min() == -1 and x.max() == 1
    x01, _ = get_dataset("digits", "train", data_range=[0, 1]).get_batch(torch.arange(10))
    assert torch.allclose(x01, (x[:10] + 1) / 2)


@pytest.mark.parametrize("name", ["checkerboard", "moons", "swissroll", "rings", "gmm8"])
def test_toy2d_sets_are_seeded_and_bounded(name):
    a, ya = make_toy2d(name, 500, torch.Generator().manual_seed(0))
    b, _ = make_toy2d(name, 500, torch.Generator().manual_seed(0))
    assert a.shape == (500, 2) and torch.equal(a, b) and ya.shape == (500,)
    assert a.abs().max() < 4 and 0.3 < a.std() < 2.5
    ds_tr, ds_te = get_dataset(name, "train", n=100), get_dataset(name, "test", n_test=50)
    assert len(ds_tr) == 100 and len(ds_te) == 50 and not torch.equal(ds_tr.x[:50], ds_te.x)
    assert ds_tr.info["kind"] == "vector" and ds_tr.info["levels"] is None


def test_checkerboard_occupies_only_black_squares():
    x, _ = make_toy2d("checkerboard", 4000)
    parity = (torch.floor(x[:, 0]) + torch.floor(x[:, 1])) % 2
    assert torch.all(parity == 0) or torch.all(parity == 1)


def test_bad_names_give_clear_errors():
    with pytest.raises(ValueError, match="data.name must be one of"):
        get_dataset("imagenet")
    with pytest.raises(ValueError, match="split must be"):
        get_dataset("digits", "val")
    with pytest.raises(ValueError, match="data_range"):
        get_dataset("digits", data_range=[0, 255])
    assert "fashion_mnist" in DATASETS


def _fashion_installed() -> bool:
    try:
        out = subprocess.run(
            ["dpkg", "-L", "dataset-fashion-mnist"], capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        return False
    return out.returncode == 0 and os.path.isdir(FASHION_MNIST_DEBIAN_ROOT)


@pytest.mark.skipif(
    not _fashion_installed(), reason="Debian package dataset-fashion-mnist not installed"
)
def test_fashion_mnist_from_debian_package():
    te = get_dataset("fashion_mnist", "test")  # default root is the package's directory
    assert len(te) == 10000 and te.info["shape"] == [1, 28, 28] and te.info["levels"] == 256
    y = te.labels
    assert set(y.tolist()) == set(range(10)) and int((y == 0).sum()) == 1000
    x, _ = te.get_batch(torch.arange(100))
    assert (
        -1 <= float(x.min()) and float(x.max()) <= 1 and 0.3 < float((x > -1).float().mean()) < 0.8
    )


# ------------------------------------------------------------------ data that lies about itself
def _idx_with_dims(arr: np.ndarray, dims: list[int], code: int = 8) -> bytes:
    """IDX whose header claims ``dims`` (and type ``code``) whatever ``arr`` holds."""
    head = bytes([0, 0, code, len(dims)]) + b"".join(int(d).to_bytes(4, "big") for d in dims)
    return head + arr.tobytes()


def test_idx_header_that_disagrees_with_the_file_is_refused(mnist_dir):
    root, imgs, labs = mnist_dir
    img, lab = root / "t10k-images-idx3-ubyte", root / "t10k-labels-idx1-ubyte"
    five = imgs["t10k"]
    img.write_bytes(_idx_with_dims(five, [6, 28, 28]))  # header claims one image more
    with pytest.raises(DataError, match=r"t10k-images.*header says shape \[6, 28, 28\]"):
        load_idx_dataset(root, "test")
    img.write_bytes(_idx_bytes(five) + b"\x00" * 28)  # trailing bytes the header does not cover
    with pytest.raises(DataError, match="t10k-images.*found 3948 bytes"):
        load_idx_dataset(root, "test")
    img.write_bytes(_idx_bytes(five))
    lab.write_bytes(_idx_bytes(labs["t10k"][:4]))  # 5 images, 4 labels
    with pytest.raises(DataError, match=r"t10k-images.* 5 images but .*t10k-labels.*\[4\]"):
        load_idx_dataset(root, "test")
    lab.write_bytes(_idx_bytes(np.array([0, 1, 12, 3, 4])))  # a label MNIST cannot have
    with pytest.raises(DataError, match="t10k-labels.*labels 0..9"):
        load_idx_dataset(root, "test")
    lab.write_bytes(_idx_bytes(labs["t10k"]))
    img.write_bytes(_idx_with_dims(five.astype(">f4"), [5, 28, 28], code=0x0D))  # float images
    with pytest.raises(DataError, match="t10k-images.*uint8 images .*float32"):
        load_idx_dataset(root, "test")
    img.write_bytes(_idx_with_dims(five[:0], [0, 28, 28]))  # no images at all
    with pytest.raises(DataError, match=r"t10k-images.*N, H, W >= 1.*\[0, 28, 28\]"):
        load_idx_dataset(root, "test")


def _cifar_batches(root, sizes: dict[str, int], record: int = 3073) -> None:
    rng = np.random.default_rng(3)
    for name, n in sizes.items():
        rec = rng.integers(0, 256, (n, record), dtype=np.uint8)
        rec[:, 0] %= 10
        rec.tofile(root / name)


def test_cifar10_batches_of_different_record_counts_are_refused(tmp_path):
    sizes = {f"data_batch_{i}.bin": 4 for i in range(1, 6)}
    sizes["data_batch_4.bin"] = 3  # truncated at a record boundary: only the count tells
    _cifar_batches(tmp_path, sizes)
    with pytest.raises(DataError, match=r"data_batch_4.bin holds 3 records, unlike the other"):
        load_cifar10_dataset(tmp_path, "train")
    _cifar_batches(tmp_path, {"test_batch.bin": 3}, record=3074)  # CIFAR-100's 2 label bytes
    with pytest.raises(DataError, match=r"test_batch.bin: 9222 bytes .* 3073-byte record"):
        load_cifar10_dataset(tmp_path, "test")


def _png(path, mode: str, size: int, value: int = 7) -> None:
    from PIL import Image

    chans = {"L": (), "RGB": (3,), "RGBA": (4,)}
    if mode == "I;16":
        Image.fromarray(np.full((size, size), 40000, np.uint16)).save(path)
        return
    Image.fromarray(np.full((size, size, *chans[mode]), value, np.uint8), mode).save(path)


def test_image_folder_mixing_sizes_or_modes_is_refused(tmp_path):
    for i in range(3):
        _png(tmp_path / f"{i}.png", "RGB", 16)
    assert len(load_image_folder_dataset(tmp_path, image_size=8)) == 3
    _png(tmp_path / "3.png", "RGB", 20)
    with pytest.raises(DataError, match=r"3.png is RGB 20x20 but .*0.png is RGB 16x16"):
        load_image_folder_dataset(tmp_path, image_size=8)
    _png(tmp_path / "3.png", "L", 16)
    with pytest.raises(DataError, match=r"3.png is L 16x16 but .*0.png is RGB 16x16"):
        load_image_folder_dataset(tmp_path, image_size=8)
    _png(tmp_path / "3.png", "RGBA", 16)
    with pytest.raises(DataError, match=r"3.png is RGBA 16x16"):
        get_dataset("image_folder", root=str(tmp_path), image_size=8)
    os.remove(tmp_path / "3.png")
    _png(tmp_path / "0.png", "I;16", 16)  # 16-bit levels would be clipped to 8 bits
    with pytest.raises(DataError, match=r"0.png has mode 'I;16'; 8-bit images are expected"):
        load_image_folder_dataset(tmp_path, image_size=8)


@pytest.mark.parametrize(
    "name, options, param",
    [
        ("moons", {"n": 0}, "data.n"),
        ("moons", {"n": -5}, "data.n"),
        ("moons", {"n": 2.5}, "data.n"),
        ("gmm8", {"n_test": 0}, "data.n_test"),  # refused for the train split too: up front
        ("rings", {"seed": -1}, "data.seed"),
        ("swissroll", {"scale": 0.0}, "data.scale"),
        ("swissroll", {"scale": float("nan")}, "data.scale"),
        ("image_folder", {"image_size": 0}, "data.image_size"),
        ("image_folder", {"n_test": -1}, "data.n_test"),
        ("image_folder", {"n_test": 3}, "n_test must be below the 3 images"),
        ("image_folder", {"channels": 0}, "data.channels"),
    ],
)
def test_zero_or_negative_sizes_are_refused_naming_the_parameter(tmp_path, name, options, param):
    for i in range(3):
        _png(tmp_path / f"{i}.png", "RGB", 8)
    opts = dict(options, root=str(tmp_path)) if name == "image_folder" else options
    with pytest.raises(ValueError, match=param.replace(".", r"\.")):
        get_dataset(name, "train", **opts)


def test_direct_constructors_refuse_bad_sizes_and_levels():
    from scoresde.data import ImageDataset, Toy2D
    from scoresde.data.images import load_digits_dataset

    with pytest.raises(ValueError, match="n must be an integer >= 1, got 0"):
        make_toy2d("moons", 0)
    with pytest.raises(ValueError, match="scale must be a finite number > 0"):
        Toy2D("moons", n=10, scale=-1.0)
    with pytest.raises(ValueError, match="n_test must be an integer >= 1"):
        load_digits_dataset("test", n_test=0)
    with pytest.raises(ValueError, match="n_test must be below the 1797 digits"):
        load_digits_dataset("train", n_test=1797)
    imgs = np.zeros((4, 1, 2, 2), np.uint8)
    with pytest.raises(ValueError, match="levels must be an integer >= 2"):
        ImageDataset(imgs, None, levels=1)
    with pytest.raises(ValueError, match=r"levels 0..16, found values 0..17"):
        ImageDataset(imgs + np.arange(4)[:, None, None, None] * 17 // 3, None, levels=17)
    with pytest.raises(ValueError, match="integer pixel levels"):
        ImageDataset(imgs.astype(np.float32), None, levels=17)
    with pytest.raises(ValueError, match=r"labels must have shape \[4\]"):
        ImageDataset(imgs, np.zeros(3), levels=17)
