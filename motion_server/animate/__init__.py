"""`talkrig animate`: audio files in; motion files, animated characters (.glb/.gltf/.fbx/.blend) and preview
videos out. ``plan`` names the outputs, ``generate`` runs the engine, ``blender_bridge`` drives the Blender
child process (the batch runner ``blender_addon.headless``), ``run`` ties them together."""
