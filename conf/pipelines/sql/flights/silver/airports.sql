-- silver.airports: one row per FAA code.
with source as (
    select * from bronze_batch
),

final as (
    select
        upper(trim(faa)) as faa,
        name as airport_name,
        lat as latitude,
        lon as longitude,
        alt as altitude_feet,
        tz as utc_offset_hours,
        dst as dst_rule,
        tzone as time_zone,
        _source_file,
        _ingested_at,
        _batch_id
    from source
)

select * from final
