from modal_jobs.cli import main

raise SystemExit(main())
