"""Popeye: copies each finished upload to S3, records it in the database and
starts the video-processing workflow."""
