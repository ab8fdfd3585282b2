"""Device behaviour on CUDA: transfers, pinned memory, asynchronous copies, device
mixing errors, DLPack with CuPy. Skipped without CuPy and an NVIDIA GPU (the op tests
in test_ops.py also run on CUDA there)."""
import numpy as np
import pytest

import pipeflow as pf

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not pf.cuda.is_available(), reason="needs CuPy and an NVIDIA GPU")]


def test_round_trip_keeps_values_and_dtype():
    for dtype in (pf.float32, pf.float16, pf.float64, pf.int64, pf.uint8, pf.bool):
        t = pf.tensor(np.arange(12).reshape(3, 4) % 3 == 0, dtype=dtype) if dtype is pf.bool \
            else pf.arange(12, dtype=dtype).reshape(3, 4)
        g = t.cuda()
        assert g.device == "cuda:0" and g.is_cuda and g.dtype == dtype
        back = g.cpu()
        assert back.device == "cpu"
        np.testing.assert_array_equal(back.numpy(), t.numpy())


def test_factories_and_ops_run_on_the_gpu():
    import cupy
    x = pf.randn(64, 32, device="cuda", requires_grad=True)
    w = pf.randn(32, 8, device="cuda", requires_grad=True)
    loss = (x @ w).relu().sum()
    loss.backward()
    assert isinstance(w.grad._data, cupy.ndarray) and w.grad.device == "cuda:0"
    expected = x.detach().cpu().numpy().T @ ((x.detach().cpu().numpy() @ w.detach().cpu().numpy())
                                             > 0).astype(np.float32)
    np.testing.assert_allclose(w.grad.cpu().numpy(), expected, rtol=1e-4, atol=1e-4)


def test_mixing_devices_names_both():
    with pytest.raises(RuntimeError, match="cpu.*cuda:0|cuda:0.*cpu"):
        pf.ones(3) + pf.ones(3, device="cuda")
    with pytest.raises(RuntimeError, match="cpu.*cuda:0|cuda:0.*cpu"):
        pf.cat([pf.ones(3), pf.ones(3, device="cuda")])


def test_non_blocking_copies_are_queued_and_blocking_ones_wait():
    """Both are queued on the current stream (behind slow work here); non_blocking=True
    returns at once, non_blocking=False once the copy is done, as in torch."""
    import cupy
    host = pf.randn(4096, 1024).pin_memory()
    assert host.is_pinned()
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        slow = cupy.random.default_rng(0).random((8192, 8192), dtype=cupy.float32)
        for _ in range(4):
            slow = slow @ slow / 8192
        dev = host.to("cuda", non_blocking=True)
        assert not stream.done  # the copy waits behind the products: it was only queued
        blocking = host.to("cuda")
        assert stream.done
    np.testing.assert_array_equal(dev.cpu().numpy(), host.numpy())
    np.testing.assert_array_equal(blocking.cpu().numpy(), host.numpy())


def test_zero_dim_tensors_and_batchnorm_buffers_move_to_the_gpu():
    x = pf.tensor(3.5).to("cuda")
    assert x.shape == () and x.device == "cuda:0" and x.item() == 3.5
    bn = pf.nn.BatchNorm2d(4).cuda()  # num_batches_tracked is 0-d
    assert bn.num_batches_tracked.device == "cuda:0" and bn.num_batches_tracked.shape == ()


def test_dlpack_with_cupy_shares_memory():
    import cupy
    c = cupy.arange(6, dtype=cupy.float32)
    t = pf.from_dlpack(c)
    c[0] = 42
    assert t.cpu().numpy()[0] == 42
    back = cupy.from_dlpack(t)
    back[1] = 7
    assert t.cpu().numpy()[1] == 7


def test_manual_seed_reproduces_cuda_streams():
    pf.manual_seed(3)
    a = pf.randn(100, device="cuda").cpu().numpy()
    pf.manual_seed(3)
    b = pf.randn(100, device="cuda").cpu().numpy()
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_loader_delivers_pinned_batches_on_the_gpu(num_workers):
    from pipeflow.data import DataLoader, TensorDataset
    images = np.random.default_rng(0).integers(0, 255, (512, 3, 32, 32), dtype=np.uint8)
    dataset = TensorDataset(pf.tensor(images), pf.arange(512))
    loader = DataLoader(dataset, batch_size=64, shuffle=True, seed=1, num_workers=num_workers,
                        pin_memory=True, device="cuda")
    reference = DataLoader(dataset, batch_size=64, shuffle=True, seed=1)
    for (x, y), (xr, yr) in zip(loader, reference):
        assert x.device == "cuda:0" and y.device == "cuda:0"
        np.testing.assert_array_equal(x.cpu().numpy(), xr.numpy())
        np.testing.assert_array_equal(y.cpu().numpy(), yr.numpy())


@pytest.mark.parametrize("num_workers", [0, 2])
def test_loader_copies_never_overwrite_a_batch_still_read_on_the_gpu(num_workers):
    """CuPy's pool hands a dropped batch's memory to the next copy on the side stream at
    once; work already queued on the user's stream must still read the batch's values."""
    from pipeflow.data import DataLoader, TensorDataset
    cupy = pf.backend.cupy
    images = np.random.default_rng(0).integers(0, 255, (40 * 64, 4096), dtype=np.uint8)
    loader = DataLoader(TensorDataset(pf.tensor(images)), batch_size=64, num_workers=num_workers,
                        pin_memory=True, device="cuda")
    slow = cupy.random.default_rng(0).random((4096, 4096), dtype=cupy.float32) / 4096
    sums = []
    for (x,) in loader:
        for _ in range(4):  # keeps the user's stream busy: the host runs ahead
            slow = slow @ slow
        sums.append(x._data.astype(cupy.float64).sum())  # queued behind that work
        del x  # the next copy may now reuse its memory
    expected = images.reshape(40, -1).astype(np.float64).sum(axis=1)
    np.testing.assert_array_equal(cupy.asnumpy(cupy.stack(sums)), expected)


def test_loader_stopped_early_and_run_for_epochs_keeps_gpu_memory_flat():
    """Breaking out waits for the copy in flight; epochs reuse one copy stream, so CuPy's
    pool (which keeps free memory per stream) does not grow epoch after epoch."""
    from pipeflow.data import DataLoader, TensorDataset
    cupy = pf.backend.cupy
    images = np.random.default_rng(1).integers(0, 255, (16 * 32, 3, 64, 64), dtype=np.uint8)
    loader = DataLoader(TensorDataset(pf.tensor(images)), batch_size=32, num_workers=2,
                        pin_memory=True, device="cuda")
    for _ in range(3):
        (x,) = next(iter(loader))  # stopped after one batch: workers and slots go
        assert x.device == "cuda:0"
    pool = cupy.get_default_memory_pool()
    totals = []
    for _ in range(5):
        for (x,) in loader:
            pass
        del x
        totals.append(pool.total_bytes())
    assert totals[-1] == totals[1], totals
