pub mod porcupine;
