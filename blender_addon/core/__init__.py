"""Blender-side core: find the character, write Actions, export, Live Link CSV. No UI here."""
