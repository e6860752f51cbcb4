import numpy as np

from slocal.capture.retrieval import bow_index, bow_vector, descriptors_to_float, train_vocabulary


def test_vocabulary_and_bow():
    rng = np.random.default_rng(1)
    centres = descriptors_to_float(rng.standard_normal((4, 128)).astype(np.float32))
    x = descriptors_to_float(np.repeat(centres, 50, 0) + 0.01 * rng.standard_normal((200, 128)).astype(np.float32))
    words = train_vocabulary(x, 8, 10, seed=0)
    assert words.shape == (8, 128)
    np.testing.assert_allclose(np.linalg.norm(words, axis=1), 1.0, rtol=1e-5)
    # Every true cluster is covered by a word at its centre.
    assert np.all(np.max(centres @ words.T, axis=1) > 0.99)
    assert train_vocabulary(x[:5], 8, 3, seed=0).shape == (5, 128)
    v = bow_vector(np.array([0, 0, 1, 3]), np.ones(4, np.float32))
    np.testing.assert_allclose(v, np.array([np.sqrt(2), 1, 0, 1]) / 2.0, rtol=1e-6)


def test_bow_index_ranks_images_of_the_same_place_first():
    # Six "images", each drawing its descriptors from one of three places (two images per place).
    rng = np.random.default_rng(2)
    places = [rng.integers(0, 255, (40, 128)) for _ in range(3)]
    images = []
    for p in (0, 1, 2, 0, 1, 2):
        pick = places[p][rng.choice(40, 30, replace=False)]
        images.append(np.clip(pick + rng.integers(-3, 4, pick.shape), 0, 255).astype(np.uint8))
    words, idf, bow = bow_index(images, size=32, iterations=5, samples=1000, seed=0)
    assert words.shape == (32, 128) and idf.shape == (32,) and bow.shape == (6, 32)
    np.testing.assert_allclose(np.linalg.norm(bow, axis=1), 1.0, rtol=1e-5)
    sims = bow @ bow.T
    np.fill_diagonal(sims, -1)
    assert sims.argmax(axis=1).tolist() == [3, 4, 5, 0, 1, 2]
