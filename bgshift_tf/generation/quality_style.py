"""How good SBSGAN's style transfers are, measured on the synthetic world (the style half of `quality`).

A style transfer source -> target should move the BACKGROUND into the target domain and keep the PERSON:
- `target_share`: share of the transfers that a background-domain classifier assigns to the target
  domain (`predicted_share` gives every domain's share). The classifier (`fit_domain_classifier`:
  standardised features + multinomial logistic regression) sees only the pixels outside the exact body
  mask (`background_features`: colour means and standard deviations, 8-bin colour histograms, an 8x4 grid
  of colour means, mean absolute horizontal and vertical differences), so clothing cannot give the domain
  away. It is fitted on ORIGINAL images of every domain (their `train` split) and tested on the originals
  of another split with other identities (`query`): `heldout_accuracy` (all domains) and each domain's
  own, so a reader knows the classifier can tell the domains apart at all. The transfers' own originals
  are in its training set labelled as the source, so the share is, if anything, conservative.
- identity kept: cosine similarity of re-ID (IDE) features between each original and its own transfer
  (`same_person_cosine`, mean over images) vs between an original and the transfers of other people
  (`different_person_cosine`, mean over all pairs with different pids; both kinds of pair hold one
  original and one transfer, so they differ in identity only); `margin` = same - different.
- `checkerboard`: `quality.checkerboard_score` of the transfers against their originals.
Pixel values are float32 in [-1, 1]; masks {0, 1}; features are computed in [0, 1] units.
"""

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from bgshift_tf.generation import quality

HISTOGRAM_BINS = 8
GRID = (8, 4)  # rows x columns of the colour-mean layout feature
CLASSIFIER_IMAGES = 1000  # originals per domain and split the classifier reads (0 = all)


def _background_grid(x, background, fallback):
    """Mean colour of the background in each cell of a GRID over the image: [B, rows*cols*C]; a cell
    without background takes the image's background mean `fallback` [B, C]."""
    row_edges = np.linspace(0, x.shape[1], GRID[0] + 1).astype(int)
    col_edges = np.linspace(0, x.shape[2], GRID[1] + 1).astype(int)
    cells = []
    for r0, r1 in zip(row_edges[:-1], row_edges[1:]):
        for c0, c1 in zip(col_edges[:-1], col_edges[1:]):
            weight = background[:, r0:r1, c0:c1]
            count = weight.sum(axis=(1, 2))
            total = (weight * x[:, r0:r1, c0:c1]).sum(axis=(1, 2))
            cells.append(np.where(count > 0, total / np.maximum(count, 1.0), fallback))
    return np.concatenate(cells, axis=1)


def background_features(pixels, masks):
    """Colour and texture statistics of the background of each image.

    Args:
        pixels: float [B,H,W,3] in [-1, 1].
        masks: {0,1} [B,H,W,1], the exact body (excluded from every statistic).

    Returns:
        float64 [B, F], F = 6 + 3 * HISTOGRAM_BINS + 3 * GRID[0] * GRID[1] + 6.
    """
    x = (np.asarray(pixels, np.float64) + 1.0) / 2.0
    masks = np.asarray(masks, np.float64)
    if x.ndim != 4 or masks.shape != x.shape[:3] + (1,):
        raise ValueError(f"pixels and masks must be [B,H,W,C] and [B,H,W,1]. Received: {x.shape}, {masks.shape}")
    background = 1.0 - masks
    count = np.maximum(background.sum(axis=(1, 2)), 1.0)  # [B, 1]
    mean = (background * x).sum(axis=(1, 2)) / count
    std = np.sqrt(np.maximum((background * x * x).sum(axis=(1, 2)) / count - mean**2, 0.0))
    bins = np.clip((x * HISTOGRAM_BINS).astype(int), 0, HISTOGRAM_BINS - 1)
    histogram = np.concatenate([(background * (bins == k)).sum(axis=(1, 2)) / count
                                for k in range(HISTOGRAM_BINS)], axis=1)
    both_x = background[:, :, 1:] * background[:, :, :-1]  # pairs of horizontally adjacent background pixels
    both_y = background[:, 1:] * background[:, :-1]
    texture_x = (both_x * np.abs(np.diff(x, axis=2))).sum(axis=(1, 2)) / np.maximum(both_x.sum(axis=(1, 2)), 1.0)
    texture_y = (both_y * np.abs(np.diff(x, axis=1))).sum(axis=(1, 2)) / np.maximum(both_y.sum(axis=(1, 2)), 1.0)
    return np.concatenate([mean, std, histogram, _background_grid(x, background, mean), texture_x, texture_y],
                          axis=1)


def fit_domain_classifier(features, labels):
    """A fitted sklearn pipeline (standardisation + logistic regression) from features [N, F] to domain
    indices [N]; ValueError when fewer than two domains are present."""
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2 or len(features) != len(labels):
        raise ValueError(f"the domain classifier needs [N, F] features and N labels of at least two domains. "
                         f"Received: {np.shape(features)} features, labels {np.unique(labels).tolist()}")
    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000)).fit(features, labels)


def identity_similarity(original_features, transfer_features, pids, chunk_rows=512):
    """Same-person vs different-person cosine similarity of re-ID features (see the module docstring).

    Args:
        original_features, transfer_features: float [N, D]; row i of both is the same image (the
            original and its transfer).
        pids: int [N], the person of each row.

    Returns:
        {"same_person_cosine", "different_person_cosine", "margin", "num_images"} (different: NaN when all
        rows are one person).
    """
    originals = np.asarray(original_features, np.float64)
    transfers = np.asarray(transfer_features, np.float64)
    pids = np.asarray(pids)
    if originals.ndim != 2 or originals.shape != transfers.shape or len(pids) != len(originals):
        raise ValueError(f"original_features and transfer_features must both be [N, D] with N pids. Received: "
                         f"{originals.shape}, {transfers.shape}, {pids.shape} pids")
    originals /= np.maximum(np.linalg.norm(originals, axis=1, keepdims=True), 1e-12)
    transfers /= np.maximum(np.linalg.norm(transfers, axis=1, keepdims=True), 1e-12)
    same = float(np.mean(np.sum(originals * transfers, axis=1)))
    total, count = 0.0, 0
    for start in range(0, len(originals), chunk_rows):
        cosine = originals[start:start + chunk_rows] @ transfers.T
        other = pids[start:start + chunk_rows, None] != pids[None, :]
        total, count = total + float(cosine[other].sum()), count + int(other.sum())
    different = total / count if count else float("nan")
    return {"same_person_cosine": same, "different_person_cosine": different, "margin": same - different,
            "num_images": len(originals)}


def _features_of(world_dir, folder, split, image_size, batch_size, max_images):
    """Background features [N, F] of the originals of `folder`'s `split` (empty when the split is absent)."""
    batches = quality.paired_batches(world_dir, folder, {}, split=split, batch_size=batch_size,
                                     max_images=max_images, image_size=image_size)
    features = [background_features(originals["pixels"].numpy(), masks) for originals, _, masks in batches]
    return np.concatenate(features) if features else np.zeros((0, 0))


def domain_classifier_on_originals(world_dir, domain_dirs, image_size, *, fit_split="train",
                                   heldout_split="query", batch_size=32, max_images=CLASSIFIER_IMAGES):
    """The background-domain classifier fitted on the originals of every domain, and its held-out accuracy.

    Args:
        world_dir: the synthetic world folder.
        domain_dirs: {domain name: TFRecord folder of its originals}; the label of a domain is its index here.
        image_size: (H, W) the images are read at (the generated images' size).
        fit_split / heldout_split: the splits it is fitted / tested on; max_images: per domain and split.

    Returns:
        (classifier, {"heldout_accuracy", "per_domain": {domain: {"heldout_accuracy", "num_fit",
        "num_heldout"}}, "fit_split", "heldout_split"}).
    """
    fit, held, per_domain = ([], []), ([], []), {}
    for index, (domain, folder) in enumerate(domain_dirs.items()):
        for split, store in ((fit_split, fit), (heldout_split, held)):
            features = _features_of(world_dir, folder, split, image_size, batch_size, max_images)
            if not len(features):
                raise ValueError(f"TFRecord folder {folder!r} ({domain}) has no {split!r} images for the "
                                 "domain classifier")
            store[0].append(features)
            store[1].append(np.full(len(features), index))
    classifier = fit_domain_classifier(np.concatenate(fit[0]), np.concatenate(fit[1]))
    for index, domain in enumerate(domain_dirs):
        per_domain[domain] = {"heldout_accuracy": float(np.mean(classifier.predict(held[0][index]) == index)),
                              "num_fit": len(fit[0][index]), "num_heldout": len(held[0][index])}
    accuracy = float(np.mean(classifier.predict(np.concatenate(held[0])) == np.concatenate(held[1])))
    return classifier, {"heldout_accuracy": accuracy, "per_domain": per_domain, "fit_split": fit_split,
                        "heldout_split": heldout_split}


def evaluate_style_transfer(world_dir, original_dir, transfer_dir, *, classifier, domains, target,
                            embed_fn=None, split="train", batch_size=32, max_images=0):
    """Target share, identity kept and checkerboard score of one folder of style transfers.

    Args:
        world_dir: the synthetic world folder.
        original_dir: TFRecord folder of the source's originals; transfer_dir: their transfers to `target`
            (written by `translate_dataset`, same record order and file names).
        classifier: from `domain_classifier_on_originals`, whose labels index `domains` (names).
        embed_fn: float32 images [B,H,W,3] in [-1, 1] (the transfers' size) -> re-ID features [B, D];
            None = no identity figures.
        split / max_images: what to read (0 = all).

    Returns:
        {"num_images", "target_share", "predicted_share": {domain: share}, "checkerboard",
         "identity": `identity_similarity`'s dict or None}.
    """
    if target not in domains:
        raise ValueError(f"`target` must be one of the classifier's domains {list(domains)}. Received: "
                         f"target={target!r}")
    predicted, power, features = [], np.zeros(4), ([], [], [])
    for originals, batches, masks in quality.paired_batches(world_dir, original_dir, {"transfer": transfer_dir},
                                                            split=split, batch_size=batch_size,
                                                            max_images=max_images):
        inputs, transfers = originals["pixels"].numpy(), batches["transfer"]["pixels"].numpy()
        predicted.append(classifier.predict(background_features(transfers, masks)))
        power += np.array([*quality.period2_power((transfers + 1) / 2), *quality.period2_power((inputs + 1) / 2)])
        if embed_fn is not None:
            for store, pixels in zip(features, (inputs, transfers)):
                store.append(np.asarray(embed_fn(pixels), np.float64))
            features[2].append(originals["pid"].numpy())
    if not predicted:
        raise ValueError(f"no {split!r} images in {original_dir!r} to measure the transfers {transfer_dir!r}")
    predicted = np.concatenate(predicted)
    shares = {domain: float(np.mean(predicted == index)) for index, domain in enumerate(domains)}
    identity = (identity_similarity(*(np.concatenate(store) for store in features))
                if embed_fn is not None else None)
    return {"num_images": len(predicted), "target_share": shares[target], "predicted_share": shares,
            "checkerboard": quality.checkerboard_score(*power), "identity": identity}

