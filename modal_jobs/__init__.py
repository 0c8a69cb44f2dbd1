"""Keep Qwen3-TTS model weights cached, verified, on a Modal Volume or a local directory."""
