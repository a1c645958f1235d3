"""A real registry on the harness machine (Debian's docker-registry), and pushing built images to it."""
