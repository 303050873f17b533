"""Runs: every job with its state and progress; refreshes itself while anything runs."""

import streamlit as st

from compression.studio import dashboard
from compression.errors import UserError
from views._ui import PAGES, findings_for, md, page, read_only, state_badge

REFRESH_S = 2
PAGE_SIZE = 15


def _cancel(job_id: str):
    try:
        dashboard.cancel(job_id)
        st.session_state["runs_msg"] = ("ok", f"Cancel requested for {md(job_id)}.")
    except (UserError, KeyError) as e:
        st.session_state["runs_msg"] = ("error", f"Cannot cancel {md(job_id)}: {md(e)}")


def _job_card(job: dict, highlight: bool):
    state = job.get("state")
    with st.container(border=True):
        a, b, c = st.columns([5, 2, 2], vertical_alignment="center")
        recipe = job.get("recipe") if isinstance(job.get("recipe"), dict) else {}
        steps = " → ".join(str(s.get("method", "?")) for s in recipe.get("steps") or [] if isinstance(s, dict)) \
            or "baseline only"
        a.markdown(f"**{md(job.get('name'))}**{'  ← just submitted' if highlight else ''}  \n"
                   f"<small>{md(job.get('id'))} · {md(job.get('kind'))} · {md(steps)}</small>", unsafe_allow_html=True)
        findings = findings_for(job)
        b.markdown(state_badge(job) + (" :red-badge[⚠ check]" if findings else ""))
        b.caption(f"elapsed {dashboard.fmt_duration(dashboard.elapsed_s(job))}")
        with c:
            if state in dashboard.ACTIVE and not read_only():
                st.button("Cancel", key=f"cancel_{job['id']}", on_click=_cancel, args=(job["id"],),
                          icon=":material/stop_circle:", disabled=bool(job.get("cancel_requested")),
                          help="Stops at the next training batch")
            elif state == "succeeded":
                st.page_link(PAGES["results"], label="Results", icon=":material/insights:",
                             query_params={"run": job["id"]})
        if findings:
            st.markdown(f":red[⚠ {md(findings[0].message)}]")
        progress = min(1.0, max(0.0, float(job.get("progress") or 0.0)))
        if state in dashboard.ACTIVE:
            what = dashboard.describe_progress(job) or ("waiting for a worker" if state == "queued" else "starting")
            if job.get("cancel_requested"):
                what += " · cancelling…"
            st.progress(progress, text=f"{progress:.0%} · {md(what)}")
        elif state == "failed":
            st.error(md(job.get("error") or "The job failed."), icon=":material/cancel:")
            with st.expander("Log of the failed run"):
                log = dashboard.read_log(job)
                st.code(log[-6000:] or "(no log)", language="text")
        elif state == "cancelled":
            st.caption(md(job.get("message") or "cancelled"))


@page
def main():
    st.title("Runs")
    st.markdown("Every baseline and compression job in the workspace. The list updates itself while a job runs; "
                "reloading the page or opening it in another tab shows the same jobs.")
    msg = st.session_state.pop("runs_msg", None)
    if msg:
        (st.success if msg[0] == "ok" else st.error)(msg[1], icon=None if msg[0] == "ok" else ":material/block:")
    jobs = dashboard.list_jobs()
    if not jobs:
        st.info("No jobs yet.")
        st.page_link(PAGES["baseline"], label="Build a baseline", icon=":material/model_training:")
        return
    active = any(j.get("state") in dashboard.ACTIVE for j in jobs)
    _jobs_panel(active)


def _jobs_panel(active: bool):
    @st.fragment(run_every=REFRESH_S if active else None)
    @page  # errors inside the fragment are messages too
    def panel():
        jobs = dashboard.list_jobs()
        now_active = any(j.get("state") in dashboard.ACTIVE for j in jobs)
        if active and not now_active:
            st.rerun()  # everything finished: redraw the page once, without the timer
        states = [j.get("state") for j in jobs]
        counts = {s: states.count(s) for s in ("running", "queued", "succeeded", "failed", "cancelled") if s in states}
        st.caption(" · ".join(f"{n} {s}" for s, n in counts.items())
                   + (f" · refreshing every {REFRESH_S} s" if now_active else ""))
        filt = st.segmented_control("Show", ["all", "active", "succeeded", "failed"], default="all", key="runs_filter")
        focus = st.query_params.get("job")
        shown = [j for j in jobs if not (filt == "active" and j.get("state") not in dashboard.ACTIVE)
                 and not (filt in ("succeeded", "failed") and j.get("state") != filt)]
        if len(shown) > PAGE_SIZE and not st.session_state.get("runs_all"):
            # every card is a dozen browser elements: the newest (and the focused job) first, the rest on request
            head = shown[:PAGE_SIZE]
            head += [j for j in shown[PAGE_SIZE:] if j.get("id") == focus]
            rest = len(shown) - len(head)
        else:
            head, rest = shown, 0
        for job in head:
            _job_card(job, highlight=job.get("id") == focus)
        if rest or st.session_state.get("runs_all"):
            st.toggle(f"Show all {len(shown)} jobs", key="runs_all")

    panel()


main()
