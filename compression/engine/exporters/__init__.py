"""engine/exporters"""
