"""The `udd` command line's arguments: every subcommand, option, default and help text, and nothing that
runs; each subcommand names its handler (module, function), which `cli.main` imports only when the command
runs, so `udd --help` needs no torch.
"""
from __future__ import annotations

import argparse

from . import __version__

# Spelled out so `udd --help` needs no torch import; a test holds them to training_presets().
TRAIN_PRESETS = ("reference", "wafer", "magnetic-tile", "wafer-generation", "feature-ae")
TRAIN_LOSSES = ("mse", "ssim", "mse+ssim", "ce", "ce-balanced")  # a test holds them to losses.LOSSES


class _OneLineParser(argparse.ArgumentParser):
    """argparse's refusals ("argument --epochs: invalid int value: '1e308'") as one line, like every other
    refusal of udd, instead of the whole usage block first; `-h` still prints the usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} -h)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree of every subcommand."""
    parser = _OneLineParser(prog="udd", description="Unsupervised defect detection with convolutional autoencoders.")
    parser.add_argument("--version", action="version", version=f"udd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("shapes", help="propagate shapes through a config and check the decoder mirrors the encoder")
    p.add_argument("config", help="config file (JSON or the reference package's AE_config.txt) or a model preset name")
    p.add_argument("--input", metavar="C,H,W",
                   help="image shape, e.g. 3,256,256; a model preset's own input when left out")
    p.add_argument("--method", default=None, metavar="NAME",
                   help="detection method: feature-ae propagates from the backbone's feature tensor (as does a "
                        "config with an \"input\" field of kind features); default: the config's own input")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--fix", metavar="OUT", help="write the config with the suggested output paddings to OUT")
    p.add_argument("--force", action="store_true", help="let --fix overwrite an existing file")
    p.set_defaults(handler=("cli_shapes", "run_shapes"))

    p = sub.add_parser("train", help="train a model on normal images into a run folder")
    p.add_argument("config", nargs="?",
                   help="config file (JSON or AE_config.txt) or a model preset name; left out with --resume "
                        "(a resumed run keeps its own)")
    p.add_argument("--data", metavar="PATH",
                   help="MVTec folder (trains on train/good), folder of images, or wafer .npy/.npz")
    p.add_argument("--out", required=True, metavar="RUN", help="run folder to create (or to continue with --resume)")
    p.add_argument("--epochs", type=int, help="number of epochs (with --resume: the new total)")
    p.add_argument("--batch-size", type=int, help="images per step")
    p.add_argument("--lr", type=float, help="Adam learning rate")
    p.add_argument("--weight-decay", type=float, metavar="WD",
                   help="Adam L2 weight decay (default: the preset's; give 0 for Deep SVDD, whose bias-free "
                        "encoder weight decay can shrink to zero codes)")
    p.add_argument("--size", metavar="H,W",
                   help="input size (default: the preset's, else 256,256 for images, 26,26 for wafers)")
    p.add_argument("--tile", action="store_true",
                   help="cut each image into tiles of the input size (--size), each tile an image of its own, as the "
                        "Train page's 'Cut images into tiles': for photos much larger than the model's input")
    p.add_argument("--noise-patches", type=int, metavar="N", help="noise patches per training image (denoising AE)")
    p.add_argument("--patch-size", metavar="MIN,MAX", help="noise patch side range in pixels")
    p.add_argument("--patch-dir", metavar="DIR", help="pattern images whose shapes are painted as noise instead of rectangles")
    p.add_argument("--val-split", type=float, metavar="F", help="share of the images held out for validation")
    p.add_argument("--seed", type=int, help="random seed (same seed, same run)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--preset", choices=TRAIN_PRESETS,
                   help="training settings to start from (default: the one the app pairs with the model preset or "
                        "the method, e.g. wafer for wafer-26, feature-ae for feature-ae; else reference)")
    p.add_argument("--loss", choices=TRAIN_LOSSES,
                   help="training loss; ce and ce-balanced (cross-entropy over one-hot channels, the second "
                        "weighing each channel alike) need a model with \"output\": \"softmax\"")
    p.add_argument("--train-on", metavar="normal|all|CLASS[,CLASS...]",
                   help="what the run learns from: the normal images (default, for detection), all images "
                        "(defects too, for generation) or the images of the named classes")
    p.add_argument("--precision", choices=("float32", "bf16"),
                   help="bf16: bfloat16 autocast steps after a parity check against float32 (validation stays float32)")
    p.add_argument("--fixed-order", action="store_true",
                   help="the same batches in the same order every epoch, as the reference package trains "
                        "(default: reshuffled each epoch)")
    p.add_argument("--method", metavar="NAME",
                   help="detection method: autoencoder (needs CONFIG), memory-bank (no CONFIG, no training), "
                        "feature-ae, dsvdd or latent-knn (need CONFIG); default: feature-ae for a CONFIG on backbone "
                        "features (an \"input\" field), else autoencoder; see the README's table of methods")
    p.add_argument("--backbone", metavar="NAME",
                   help="memory bank: pretrained backbone: lite0 (EfficientNet-Lite0, the only one; "
                        "efficientnet-lite0 names it too)")
    p.add_argument("--layers", metavar="LAYERS",
                   help="memory bank: backbone feature layers, comma-separated (default s16,stage6,s32; "
                        "s8,s16 below 192 px a side)")
    p.add_argument("--coreset", type=float, metavar="F",
                   help="memory bank: share of patches kept by the coreset (default 0.1)")
    p.add_argument("--k", type=int, metavar="K",
                   help="memory bank: nearest bank patches averaged per patch; latent-knn: nearest training codes "
                        "averaged per image (default 1)")
    p.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="any other option of the method, e.g. --option svdd_epochs=20 (repeatable)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out with its own config and settings: a stopped or interrupted one, "
                        "or a finished one to a larger --epochs (only --epochs, --device and --data may be given)")
    p.set_defaults(handler=("cli_train", "run_train"))

    p = sub.add_parser("generate", help="generate new images from noised latent codes of a trained model")
    p.add_argument("run", metavar="RUN", help="run folder (or a run name under $UDD_RUNS_DIR), or a reference-package "
                   "model folder (its size from --size or the images)")
    p.add_argument("--data", metavar="PATH", help="images to start from (default: the run's training data)")
    p.add_argument("--sigma", type=float, metavar="S",
                   help="std of the Gaussian noise added to the latent code (default: the Generate page's, about "
                        "half the latent spread of the training images; the value used is printed)")
    p.add_argument("-n", type=int, required=True, metavar="N", help="number of images to write")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the PNGs (created if missing)")
    p.add_argument("--seed", type=int, default=0, help="random seed: picks the sources and the noise (default 0)")
    p.add_argument("--class", dest="cls", metavar="NAME", help="start only from images with this label")
    p.add_argument("--sources", type=int, metavar="K",
                   help="draw the N images from K source images, output j from source j %% K (default: N, each "
                        "image its own source); the Generate page's 'Source images' x 'Variants per source' is "
                        "-n K*V --sources K")
    p.add_argument("--split", choices=("train", "test", "all"), default="train",
                   help="MVTec split to start from (default train; wafer files and plain folders ignore it)")
    p.add_argument("--size", metavar="H,W", help="input size, for model folders that store none")
    p.add_argument("--random", action="store_true",
                   help="decode random latents drawn from the training images' latent statistics instead")
    p.add_argument("--per-position", action="store_true",
                   help="with --random: statistics per latent position, not pooled per channel (keeps a shared "
                        "layout such as a wafer's outline)")
    p.add_argument("--npz", metavar="OUT.npz",
                   help="also save the generated wafer maps for augmentation: maps uint8 (N, H, W) in 0/1/2 "
                        "(argmax, outline kept from the source), labels (source class), sources (source index)")
    p.add_argument("--latent-map", metavar="OUT.csv",
                   help="also save the Generate page's latent map: each image's code (up to 1,000) and each "
                        "generated code on the two main axes of the data's codes (PCA), as CSV")
    p.add_argument("--force", action="store_true",
                   help="overwrite existing files of the same names (and --npz, --latent-map)")
    p.set_defaults(handler=("cli_generate", "run_generate"))

    p = sub.add_parser("score", help="score a data set with a trained run: image scores, metrics, heatmaps")
    p.add_argument("run", metavar="RUN", help="run folder (or a run name under $UDD_RUNS_DIR), or a reference model folder")
    p.add_argument("--data", metavar="PATH",
                   help="MVTec folder (scores test/ by default), folder of images, or wafer .npy/.npz "
                        "(default: the run's training data)")
    p.add_argument("--split", choices=("test", "train", "all"),
                   help="MVTec split to score (default test; a wafer file or a plain folder has none)")
    p.add_argument("--residual", metavar="KIND",
                   help="anomaly map: l2, l2sum, l1 or ssim for an autoencoder; each method lists its own "
                        "(default: the run's method default, l2 for an autoencoder)")
    p.add_argument("--score", choices=("mean", "max", "topk"),
                   help="image score from the map (default: the method's; mean for an autoencoder, topk for one on "
                        "wafer maps or trained with an SSIM loss)")
    p.add_argument("--topk", type=float, metavar="PERCENT",
                   help="share of pixels averaged by --score topk (default: the method's; 1, 5 on wafer maps)")
    p.add_argument("--smooth", type=float, metavar="SIGMA",
                   help="Gaussian smoothing of the map in px (default: the method's; 0 for an autoencoder, 1.5 for "
                        "one on wafer maps)")
    p.add_argument("--border", type=int, metavar="PX",
                   help="pixels on each side left out of the image score, not of the map (default: the method's; "
                        "0 for an autoencoder, 1/16 of the side for the memory bank and the feature AE from 192 px)")
    p.add_argument("--size", metavar="H,W", help="input size (default: the model's, else the images' own size)")
    # One sets the threshold or the other: given both, the FPR would be silently ignored.
    thr = p.add_mutually_exclusive_group()
    thr.add_argument("--threshold", type=float, metavar="T", help="image-score threshold (default: from --target-fpr)")
    thr.add_argument("--target-fpr", type=float, default=0.01, metavar="F",
                     help="false-positive rate on the run's normal validation images that sets the threshold "
                          "(default 0.01)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--heatmaps", metavar="DIR", help="write one overlay PNG per image into DIR")
    p.add_argument("--report", metavar="FILE.html",
                   help="write the one-page HTML report (as Inspect's Export tab gives it)")
    p.add_argument("--csv", metavar="FILE.csv", help="write the scores as CSV, one line per image (path, label, score, "
                   "mse, defective, threshold), as Inspect's Export tab gives it")
    p.add_argument("--force", action="store_true",
                   help="let --heatmaps overwrite PNGs of the same names, and --report and --csv an existing file")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    p.add_argument("--device", default="cpu", help="cpu, auto, cuda, cuda:N or mps")
    p.set_defaults(handler=("cli_score", "run_score"))

    p = sub.add_parser("export", help="export a run to ONNX (anomaly map and score in one graph), checked in onnxruntime")
    p.add_argument("run", metavar="RUN", help="run folder, or a run name under $UDD_RUNS_DIR")
    p.add_argument("--onnx", required=True, metavar="OUT.onnx",
                   help="the ONNX file to write; OUT.json beside it gets the input size, normalisation, threshold "
                        "and parity figures")
    p.add_argument("--opset", type=int, default=17, metavar="N", help="ONNX opset, 13 to 20 (default 17)")
    p.add_argument("--data", metavar="PATH", help="the run's training data where it is now, when it has moved "
                                                  "(the parity check reloads the run's validation images)")
    p.add_argument("--force", action="store_true", help="overwrite OUT.onnx and OUT.json")
    p.set_defaults(handler=("cli_export", "run_export"))
    return parser
