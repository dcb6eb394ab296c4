#include "image_codecs.h"

#include <errno.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <png.h>

void xt_image_free(xt_image *image) {
    free(image->pixels);
    image->pixels = NULL;
}

static int fail(xt_image *image, const char *message) {
    snprintf(image->error, sizeof image->error, "%s", message);
    xt_image_free(image);
    return 1;
}

static void png_error_to_jump(png_structp png, png_const_charp message) {
    xt_image *image = png_get_error_ptr(png);
    snprintf(image->error, sizeof image->error, "PNG: %s", message);
    png_longjmp(png, 1);
}

static void png_ignore_warning(png_structp png, png_const_charp message) {
    (void)png;
    (void)message;
}

int xt_decode_png(const char *path, xt_image *image) {
    memset(image, 0, sizeof *image);
    FILE *file = fopen(path, "rb");
    if (!file) return fail(image, strerror(errno));
    unsigned char signature[8];
    if (fread(signature, 1, 8, file) != 8 || png_sig_cmp(signature, 0, 8)) {
        fclose(file);
        return fail(image, "not a PNG file");
    }
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, image, png_error_to_jump, png_ignore_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    unsigned char **rows = NULL;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        fclose(file);
        return fail(image, "out of memory");
    }
    if (setjmp(png_jmpbuf(png))) {
        free(rows);
        png_destroy_read_struct(&png, &info, NULL);
        fclose(file);
        xt_image_free(image);
        return 1;
    }
    png_init_io(png, file);
    png_set_sig_bytes(png, 8);
    png_read_info(png, info);
    png_set_expand(png);
    png_set_strip_16(png);
    png_set_strip_alpha(png);
    png_set_gray_to_rgb(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    image->width = (int)png_get_image_width(png, info);
    image->height = (int)png_get_image_height(png, info);
    if (png_get_rowbytes(png, info) != (size_t)image->width * 3) png_error(png, "unexpected row layout after conversion to RGB");
    image->pixels = malloc((size_t)image->width * image->height * 3);
    rows = malloc(sizeof(unsigned char *) * image->height);
    if (!image->pixels || !rows) png_error(png, "out of memory");
    for (int y = 0; y < image->height; y++) rows[y] = image->pixels + (size_t)y * image->width * 3;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    fclose(file);
    return 0;
}

struct jpeg_failure {
    struct jpeg_error_mgr manager;
    jmp_buf jump;
    xt_image *image;
};

int xt_encode_png(const char *path, xt_image *image) {
    FILE *file = fopen(path, "wb");
    if (!file) {
        snprintf(image->error, sizeof image->error, "cannot create (%s)", strerror(errno));
        return 1;
    }
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, image, png_error_to_jump, png_ignore_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info || setjmp(png_jmpbuf(png))) {
        if (!png || !info) snprintf(image->error, sizeof image->error, "PNG: out of memory");
        png_destroy_write_struct(&png, &info);
        fclose(file);
        return 1;
    }
    png_init_io(png, file);
    png_set_IHDR(png, info, (png_uint_32)image->width, (png_uint_32)image->height, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < image->height; y++) png_write_row(png, image->pixels + (size_t)y * image->width * 3);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    if (fclose(file) != 0) {
        snprintf(image->error, sizeof image->error, "write failed (%s)", strerror(errno));
        return 1;
    }
    return 0;
}

static void jpeg_error_to_jump(j_common_ptr info) {
    struct jpeg_failure *failure = (struct jpeg_failure *)info->err;
    char message[JMSG_LENGTH_MAX];
    info->err->format_message(info, message);
    snprintf(failure->image->error, sizeof failure->image->error, "JPEG: %s", message);
    longjmp(failure->jump, 1);
}

static void jpeg_ignore_message(j_common_ptr info, int level) {
    (void)info;
    (void)level;
}

int xt_decode_jpeg(const char *path, xt_image *image) {
    memset(image, 0, sizeof *image);
    FILE *file = fopen(path, "rb");
    if (!file) return fail(image, strerror(errno));
    struct jpeg_decompress_struct info;
    struct jpeg_failure failure;
    info.err = jpeg_std_error(&failure.manager);
    failure.manager.error_exit = jpeg_error_to_jump;
    failure.manager.emit_message = jpeg_ignore_message;
    failure.image = image;
    if (setjmp(failure.jump)) {
        jpeg_destroy_decompress(&info);
        fclose(file);
        xt_image_free(image);
        return 1;
    }
    jpeg_create_decompress(&info);
    jpeg_stdio_src(&info, file);
    jpeg_read_header(&info, TRUE);
    if (info.jpeg_color_space == JCS_CMYK || info.jpeg_color_space == JCS_YCCK) {
        snprintf(image->error, sizeof image->error, "JPEG: CMYK images are not supported");
        longjmp(failure.jump, 1);
    }
    info.out_color_space = JCS_RGB;
    jpeg_start_decompress(&info);
    image->width = (int)info.output_width;
    image->height = (int)info.output_height;
    image->pixels = malloc((size_t)image->width * image->height * 3);
    if (!image->pixels) {
        snprintf(image->error, sizeof image->error, "out of memory");
        longjmp(failure.jump, 1);
    }
    while (info.output_scanline < info.output_height) {
        unsigned char *row = image->pixels + (size_t)info.output_scanline * image->width * 3;
        jpeg_read_scanlines(&info, &row, 1);
    }
    jpeg_finish_decompress(&info);
    jpeg_destroy_decompress(&info);
    fclose(file);
    return 0;
}
