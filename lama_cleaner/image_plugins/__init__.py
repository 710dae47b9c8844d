"""Image plugins served by ``/run_plugin`` (contract §6): MakeGIF built in, the others when installed."""
