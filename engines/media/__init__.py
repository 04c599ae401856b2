"""The media room: images (every bit depth and channel layout, metadata kept), target sizes, the
video pipeline, and the bounded stages that overlap decoding, inference and encoding."""
