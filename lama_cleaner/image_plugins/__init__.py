"""Image plugins served by ``/run_plugin`` (docs/compatibility.md#image-plugins): MakeGIF built in, the
others when installed."""
