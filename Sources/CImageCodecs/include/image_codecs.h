// PNG and JPEG decoding to 8-bit RGB through libpng and libjpeg-turbo. Both libraries report errors by
// longjmp, which Swift cannot catch; this shim turns them into an error string.
#ifndef XTRAIN_IMAGE_CODECS_H
#define XTRAIN_IMAGE_CODECS_H

typedef struct {
    int width;
    int height;
    unsigned char *pixels;   // width * height * 3 bytes, rows top to bottom; free with xt_image_free
    char error[256];         // set when a decoder returns non-zero
} xt_image;

// Decodes a PNG file: palette and low-bit-depth images expanded, 16-bit reduced to its high byte, alpha
// dropped, gray replicated to RGB (what Pillow's Image.convert("RGB") gives).
int xt_decode_png(const char *path, xt_image *image);

// Decodes a JPEG file (baseline or progressive, gray or YCbCr) to RGB with libjpeg's defaults.
int xt_decode_jpeg(const char *path, xt_image *image);

void xt_image_free(xt_image *image);

// Encodes image->pixels (8-bit RGB, width x height) as a PNG file at `path`; on failure sets image->error.
int xt_encode_png(const char *path, xt_image *image);

#endif
