"""The embedded local stack: an S3 emulator and a Lambda runtime over loopback HTTP."""
