#!/usr/bin/env python3
"""Image fixtures for xtrain's preprocessing tests: source PNG/JPEG files and what Pillow makes of them.

For each source it writes Tests/Fixtures/images/<name> and expected-<stem>.png: the image opened with
Pillow, converted to RGB, resized so the short side is 224 (long side int(224 * long / short)) with
Image.BICUBIC, then centre-cropped to 224 x 224 with offsets rounded down (CLIP's preprocessing as
Hugging Face's CLIPImageProcessor does it with Pillow).
Rerun:  pip install pillow && python3 Tools/reference/make_image_fixtures.py
"""
import math
import os
import random

from PIL import Image, ImageDraw

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Tests", "Fixtures", "images")


def scene(width, height, seed):
    """Smooth gradients, a few shapes and light noise: detail for the filter, small files."""
    rng = random.Random(seed)
    image = Image.new("RGB", (width, height))
    pixels = image.load()
    for y in range(height):
        for x in range(width):
            r = int(127 + 100 * math.sin(x / 17.0 + seed))
            g = int(127 + 100 * math.cos(y / 23.0))
            b = int((x * y) % 256)
            n = rng.randint(-6, 6)
            pixels[x, y] = (max(0, min(255, r + n)), max(0, min(255, g - n)), max(0, min(255, b + n)))
    draw = ImageDraw.Draw(image)
    for _ in range(4):
        x0, y0 = rng.randint(0, width - 40), rng.randint(0, height - 40)
        colour = (rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255))
        draw.ellipse([x0, y0, x0 + rng.randint(10, 60), y0 + rng.randint(10, 60)], fill=colour)
    return image


def clip_preprocess(image, side=224):
    image = image.convert("RGB")
    w, h = image.size
    if w <= h:
        size = (side, int(side * h / w))
    else:
        size = (int(side * w / h), side)
    image = image.resize(size, Image.BICUBIC)
    left, top = (size[0] - side) // 2, (size[1] - side) // 2
    return image.crop((left, top, left + side, top + side))


def main():
    os.makedirs(ROOT, exist_ok=True)
    sources = {
        "photo.jpg": lambda: scene(320, 240, 1),
        "tall.png": lambda: scene(150, 260, 2),
        "gray.png": lambda: scene(260, 300, 3).convert("L"),
        "palette.png": lambda: scene(240, 240, 4).convert("P", palette=Image.ADAPTIVE, colors=64),
        "alpha.png": lambda: scene(300, 200, 5).convert("RGBA"),
        "progressive.jpg": lambda: scene(230, 410, 6),
    }
    for name, make in sources.items():
        path = os.path.join(ROOT, name)
        image = make()
        if name == "photo.jpg":
            image.save(path, quality=85)
        elif name == "progressive.jpg":
            image.save(path, quality=80, progressive=True)
        else:
            image.save(path)
        expected = clip_preprocess(Image.open(path))
        expected.save(os.path.join(ROOT, "expected-" + os.path.splitext(name)[0] + ".png"))
        print(name, Image.open(path).mode, Image.open(path).size)


if __name__ == "__main__":
    main()
