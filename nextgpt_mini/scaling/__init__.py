"""Chapter 08: full size without downloading: parameter tables (`params`) and GPU memory plans (`memory`)."""
