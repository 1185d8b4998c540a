import numpy as np
import pytest

from udd_core.regions import Region, find_regions


def _planted():
    """40x50 map: blob A (rows 5..9, cols 10..15, peak 3.0), blob B (rows 25..27, cols 30..33,
    peak 5.0), one isolated noisy pixel and a 2-pixel speck, on a low background."""
    rng = np.random.default_rng(0)
    m = rng.random((40, 50)) * 0.1
    m[5:10, 10:16] = 1.0
    m[7, 12] = 3.0
    m[25:28, 30:34] = 2.0
    m[26, 31] = 5.0
    m[35, 45] = 4.0  # lone hot pixel
    m[2, 40:42] = 1.5  # speck
    return m


@pytest.mark.parametrize("method", ["components", "dbscan"])
def test_planted_blobs_found_with_exact_stats(method):
    m = _planted()
    regions = find_regions(m, 0.5, method=method, eps=1.5, min_samples=3, min_pixels=5)
    assert [r.peak for r in regions] == [5.0, 3.0]  # sorted by peak, speck and lone pixel gone
    b, a = regions
    assert b == Region(bbox=(25, 30, 27, 33), area=12, peak=5.0, centroid=(26.0, 31.5))
    assert a.bbox == (5, 10, 9, 15) and a.area == 30
    assert a.centroid == pytest.approx((7.0, 12.5))


def test_min_pixels_filters_small_regions():
    m = _planted()
    all_comp = find_regions(m, 0.5, min_pixels=1)
    assert sorted(r.area for r in all_comp) == [1, 2, 12, 30]
    assert all_comp[0].peak == 5.0 and all_comp[1].peak == 4.0  # lone pixel kept when allowed
    assert sorted(r.area for r in find_regions(m, 0.5, min_pixels=13)) == [30]
    assert find_regions(m, 10.0) == []


def test_components_use_eight_connectivity():
    m = np.zeros((8, 8))
    for i in range(6):
        m[i, i] = 1.0 + i  # a diagonal line: one 8-connected region, six 4-connected ones
    regions = find_regions(m, 0.5, min_pixels=1)
    assert len(regions) == 1
    assert regions[0].bbox == (0, 0, 5, 5) and regions[0].area == 6 and regions[0].peak == 6.0


def test_dbscan_drops_noise_even_without_min_pixels():
    m = _planted()
    regions = find_regions(m, 0.5, method="dbscan", eps=1.5, min_samples=3, min_pixels=0)
    # The lone pixel and the 2-pixel speck have too few neighbours: DBSCAN marks them noise.
    assert sorted(r.area for r in regions) == [12, 30]
    # A wide eps bridges gaps that components cannot: two blobs 2 px apart merge.
    m2 = np.zeros((10, 20))
    m2[2:6, 2:6] = 1.0
    m2[2:6, 8:12] = 2.0
    assert len(find_regions(m2, 0.5, min_pixels=1)) == 2
    merged = find_regions(m2, 0.5, method="dbscan", eps=3.0, min_samples=3, min_pixels=1)
    assert len(merged) == 1 and merged[0].area == 32 and merged[0].bbox == (2, 2, 5, 11)


def test_dbscan_selects_same_pixels_as_reference_get_pixels():
    from defect_detection.filtering import get_pixels

    m = _planted()
    ref = get_pixels(m.copy(), 0.5, {"eps": 1.5, "min_samples": 3}, 5)
    regions = find_regions(m, 0.5, method="dbscan", eps=1.5, min_samples=3, min_pixels=5)
    assert sum(r.area for r in regions) == ref.shape[0]
    boxes = [r.bbox for r in regions]
    for row, col in ref:  # every reference pixel sits in one of our regions
        assert any(t <= row <= b and lf <= col <= rt for t, lf, b, rt in boxes)


def test_bad_arguments():
    with pytest.raises(ValueError, match="map2d"):
        find_regions(np.zeros((2, 3, 4)), 0.5)
    with pytest.raises(ValueError, match="method"):
        find_regions(np.zeros((3, 4)), 0.5, method="kmeans")
    with pytest.raises(ValueError, match="eps"):
        find_regions(np.ones((3, 4)), 0.5, method="dbscan", eps=0)


def test_region_to_dict():
    r = find_regions(_planted(), 0.5)[0]
    d = r.to_dict()
    assert d["bbox"] == [25, 30, 27, 33] and d["area"] == 12 and d["peak"] == 5.0
