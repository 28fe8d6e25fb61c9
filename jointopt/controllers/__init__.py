"""Search controllers: the Optuna and Ray Tune backends, their storage and samplers."""

from jointopt.controllers.samplers import make_sampler, register_sampler, sampler_names

__all__ = ["register_sampler", "make_sampler", "sampler_names", "run_search"]


def run_search(study, *, backend=None, n_trials=None, progress=True):  # type: ignore[no-untyped-def]
    """Run or resume the study's search on its backend (``optuna`` or ``ray``)."""
    from jointopt.controllers.storage import with_storage_retry, worker_id

    backend = backend or study.search.backend
    me = worker_id()
    passes = 0

    def one_pass():  # type: ignore[no-untyped-def]
        nonlocal passes
        passes += 1
        # After a broken-off pass, trials this process left RUNNING are orphans too.
        orphans = (me,) if passes > 1 else ()
        if backend == "ray":
            from jointopt.controllers.ray_backend import run_ray

            return run_ray(study, n_trials=n_trials, progress=progress, orphans=orphans)
        from jointopt.controllers.optuna_backend import run_optuna

        return run_optuna(study, n_trials=n_trials, progress=progress, orphans=orphans)

    return with_storage_retry(study, one_pass)
