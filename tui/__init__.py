"""The llmpulse dashboard (Textual). It only shows what `core/` produces and sends decisions back."""
