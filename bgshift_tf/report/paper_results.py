"""Published numbers of the paper (Huang et al., "SBSGAN: Suppression of Inter-Domain Background Shift
for Person Re-Identification", ICCV 2019), transcribed from `paper/sbsgan_iccv2019.md`.

All are REAL-DATA results: IDE / DA-2S trained on Market-1501 and tested on DukeMTMC-reID, single
query, in percent. The report prints them beside our synthetic-world numbers; absolute values are not
comparable (different data), the ordering of the rows is what a reproduction can check.

Each row has a stable `key`; the pipeline links its own rows to a paper row through `paper_key`.
Natural pairings in this project: our hard-mask images with the noisy "parser" masks stand in for
JPPNet ("hard_mask_jppnet"); SBSGAN's own style branch is a StarGAN-style transfer ("style_stargan").
"""

TABLE2 = {
    "source": "Table 2: baseline performance of cross-domain person re-ID (IDE, DenseNet-121)",
    "setting": "Market-1501 → DukeMTMC-reID",
    "columns": ("mAP", "R-1", "R-5", "R-10"),
    "rows": (
        {"key": "original", "group": "Original images", "name": "Original",
         "mAP": 17.7, "R-1": 33.5, "R-5": 49.3, "R-10": 55.1},
        {"key": "hard_mask_maskrcnn", "group": "Hard-mask images", "name": "Mask-RCNN",
         "mAP": 20.6, "R-1": 37.5, "R-5": 53.4, "R-10": 59.1},
        {"key": "hard_mask_jppnet", "group": "Hard-mask images", "name": "JPPNet",
         "mAP": 21.5, "R-1": 38.6, "R-5": 54.3, "R-10": 60.0},
        {"key": "style_ptgan", "group": "Style-transferred images", "name": "PTGAN",
         "mAP": 22.7, "R-1": 42.9, "R-5": 58.0, "R-10": 64.2},
        {"key": "style_spgan", "group": "Style-transferred images", "name": "SPGAN",
         "mAP": 22.8, "R-1": 42.0, "R-5": 57.9, "R-10": 64.1},
        {"key": "style_stargan", "group": "Style-transferred images", "name": "StarGAN",
         "mAP": 21.6, "R-1": 39.8, "R-5": 53.4, "R-10": 59.9},
        {"key": "soft_mask_wo_sc", "group": "Soft-mask images (SBSGAN)", "name": "Soft-mask w/o L_sc",
         "mAP": 21.2, "R-1": 41.7, "R-5": 56.3, "R-10": 62.7},
        {"key": "soft_mask", "group": "Soft-mask images (SBSGAN)", "name": "Soft-mask",
         "mAP": 22.3, "R-1": 43.3, "R-5": 58.2, "R-10": 64.4},
        {"key": "soft_mask_2domains", "group": "Soft-mask images (SBSGAN)", "name": "Soft-mask (2 domains)",
         "mAP": 23.5, "R-1": 44.2, "R-5": 59.5, "R-10": 65.3},
    ),
}

TABLE3 = {
    "source": "Table 3: ablation study of DA-2S",
    "setting": "Market-1501 → DukeMTMC-reID",
    "columns": ("mAP", "R-1"),
    "rows": (
        {"key": "baseline", "group": "DA-2S ablation", "name": "Baseline (2 streams, no SE, no ISDC)",
         "mAP": 28.8, "R-1": 50.2},
        {"key": "baseline_se", "group": "DA-2S ablation", "name": "Baseline + SE block",
         "mAP": 28.9, "R-1": 50.5},
        {"key": "baseline_se_isdc_se", "group": "DA-2S ablation", "name": "Baseline + SE + ISDC-SE",
         "mAP": 30.4, "R-1": 51.5},
        {"key": "da2s", "group": "DA-2S ablation", "name": "Baseline + SE + ISDC (DA-2S)",
         "mAP": 30.8, "R-1": 53.5},
        {"key": "da2s_2style", "group": "Inputs", "name": "DA-2S† (2 × style-transferred)",
         "mAP": 28.4, "R-1": 49.6},
        {"key": "da2s_2soft", "group": "Inputs", "name": "DA-2S‡ (2 × soft-mask)",
         "mAP": 27.0, "R-1": 51.5},
    ),
}

# Section 5.3 (text on Fig. 6): L1 distance between the Market-1501 and DukeMTMC-reID centres in a 2-D
# Barnes-Hut t-SNE embedding. The figure's other values are not legible in our copy of the paper.
FIG6_DOMAIN_DISTANCE = {
    "source": "Section 5.3 / Fig. 6: L1 distance between domain centres in the 2-D t-SNE embedding",
    "setting": "Market-1501 vs DukeMTMC-reID",
    "values": {"hard_mask": 10.19, "soft_mask": 10.90},
}
