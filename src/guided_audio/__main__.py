from guided_audio.cli import main

main()
