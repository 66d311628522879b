module riptide/porcupine-frontend

go 1.16

require github.com/anishathalye/porcupine v0.0.0
