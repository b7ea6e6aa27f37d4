"""hatch integration of pixi-pack-ci (builder and build hook), registered through hatch's entry points."""
